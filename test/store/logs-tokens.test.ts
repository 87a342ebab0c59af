import { beforeEach, describe, expect, it } from "vitest";
import type { Store } from "../../src/store/store.js";
import { BACKENDS, useTestStore } from "../helpers/databases.js";

describe.each(BACKENDS)("log and token stores on %s", (backend) => {
  const current = useTestStore(backend);
  let store: Store;
  beforeEach(() => {
    store = current();
  });

  it("reads a log from any offset without gaps or repeats", async () => {
    await store.logs.append(7, { seq: 0, offset: 0, text: "one\ntwo\n" });
    await store.logs.append(7, { seq: 1, offset: 8, text: "thrée\n" });
    expect(await store.logs.end(7)).toEqual({ offset: 15, seq: 2 });
    const all = await store.logs.read(7, 0);
    expect(all.chunks.map((c) => c.text).join("")).toBe("one\ntwo\nthrée\n");
    expect(all.nextOffset).toBe(15);
    const tail = await store.logs.read(7, 4);
    expect(tail.chunks.map((c) => c.text).join("")).toBe("two\nthrée\n");
    expect((await store.logs.read(7, 15)).chunks).toEqual([]);
  });

  it("stores tokens hashed and authenticates them", async () => {
    const { token, info } = await store.tokens.create({
      name: "ci",
      role: "deployer",
      apps: ["shop"],
      createdBy: "admin",
    });
    expect(token).toMatch(/^tnt_/);
    expect(info.role).toBe("deployer");
    const principal = await store.tokens.authenticate(token);
    expect(principal).toMatchObject({ name: "ci", role: "deployer", apps: ["shop"] });
    expect(await store.tokens.authenticate(`${token}x`)).toBeUndefined();
    await expect(
      store.tokens.create({ name: "ci", role: "viewer", apps: null, createdBy: "admin" }),
    ).rejects.toMatchObject({
      code: "E_CONFLICT",
    });
    await store.tokens.revoke("ci", "admin");
    expect(await store.tokens.authenticate(token)).toBeUndefined();
  });

  it("remembers webhook deliveries until they are pruned", async () => {
    expect(await store.webhooks.recordDelivery("github", "d-1", "shop")).toBe(true);
    expect(await store.webhooks.recordDelivery("github", "d-1", "shop")).toBe(false);
    expect(await store.webhooks.prune(new Date(Date.now() - 60_000).toISOString())).toBe(0);
    expect(await store.webhooks.prune(new Date(Date.now() + 60_000).toISOString())).toBe(1);
    expect(await store.webhooks.recordDelivery("github", "d-1", "shop")).toBe(true);
  });
});
