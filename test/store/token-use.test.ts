import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { Store } from "../../src/store/store.js";
import { hashToken } from "../../src/store/tokens.js";
import { BACKENDS, createTestDatabase, type TestDatabase } from "../helpers/databases.js";

/**
 * A token's last use is written when it authenticates, at most once per
 * interval: per process (in memory) and across processes (the UPDATE skips a
 * row written within the interval). The interval is shortened here.
 */
const INTERVAL_MS = 400;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe.each(BACKENDS)("token use on %s", (backend) => {
  let database: TestDatabase;
  const stores: Store[] = [];
  const open = async () => {
    const store = await Store.open({
      url: database.url,
      ...(database.sqliteFile ? { sqliteFile: database.sqliteFile } : {}),
      tokenUseIntervalMs: INTERVAL_MS,
    });
    stores.push(store);
    return store;
  };

  beforeEach(async () => {
    database = await createTestDatabase(backend);
  });

  afterEach(async () => {
    for (const store of stores.splice(0)) await store.close();
    await database.drop();
  });

  it("API tokens: set on use, not rewritten within the interval, rewritten after it", async () => {
    const store = await open();
    // Another server process on the same database (opened first: opening is not instant).
    const other = await open();
    const { token } = await store.tokens.create({ name: "ci", role: "viewer", apps: null, createdBy: "t" });
    const lastUsed = async () => (await store.tokens.list()).find((t) => t.name === "ci")!.lastUsedAt;
    expect(await lastUsed()).toBeNull();

    await store.tokens.authenticate(token);
    const first = await lastUsed();
    expect(first).not.toBeNull();
    await sleep(20);
    await store.tokens.authenticate(token);
    expect(await lastUsed()).toBe(first);

    // The other process's memory is fresh, but the row is not stale yet: no write.
    await other.tokens.authenticate(token);
    expect(await lastUsed()).toBe(first);

    await sleep(INTERVAL_MS + 100);
    await store.tokens.authenticate(token);
    const second = await lastUsed();
    expect(second! > first!).toBe(true);
    // Unknown tokens touch nothing.
    expect(await store.tokens.authenticate(`${token}x`)).toBeUndefined();
    expect(await lastUsed()).toBe(second);
  });

  it("host tokens: set on use, throttled, and reset when the host gets a new token", async () => {
    const store = await open();
    const token = "tnh_test-host-token";
    await store.hosts.enrollAgent({
      name: "web-1",
      labels: {},
      owner: "o",
      tokenHash: hashToken(token),
      grant: null,
    });
    const lastUsed = async () => (await store.hosts.get("web-1"))!.tokenLastUsedAt;
    expect(await lastUsed()).toBeNull();

    expect(await store.hosts.authenticate(token)).toMatchObject({ role: "agent" });
    const first = await lastUsed();
    expect(first).not.toBeNull();
    await sleep(20);
    expect(await store.hosts.findByToken(token)).toBeDefined();
    expect(await lastUsed()).toBe(first);

    await store.hosts.enrollAgent({
      name: "web-1",
      labels: {},
      owner: "o",
      tokenHash: hashToken("tnh_new"),
      grant: null,
    });
    expect(await lastUsed()).toBeNull();
  });
});
