import { beforeEach, describe, expect, it } from "vitest";
import type { Principal } from "../../src/domain/roles.js";
import type { Store } from "../../src/store/store.js";
import { BACKENDS, useTestStore } from "../helpers/databases.js";
import { newDeploy, SHA } from "./fixtures.js";

const admin: Principal = { tokenId: 1, name: "root", role: "admin", apps: null };
const OWNER = "w1";

/** A deploy taken from queued to an outcome through the store, as the worker does. */
async function finished(store: Store, status: "succeeded" | "failed", overrides = {}) {
  const created = await store.deploys.create(newDeploy(overrides), () => ({ ignoredSafeties: [] }));
  const claimed = await store.deploys.claimNext(OWNER, 30_000);
  expect(claimed?.id).toBe(created.id);
  return store.deploys.finish(created.id, OWNER, {
    status,
    ...(status === "succeeded" ? { release: { fingerprint: `fp${created.id}`, environmentConfig: {} } } : {}),
    ...(status === "failed" ? { errorCode: "command_failed" as const, errorMessage: "exit 1" } : {}),
  });
}

describe.each(BACKENDS)("dashboard store on %s", (backend) => {
  const current = useTestStore(backend);
  let store: Store;
  beforeEach(() => {
    store = current();
  });

  it("records a deploy's phases in order, with their times", async () => {
    const d = await store.deploys.create(newDeploy(), () => ({ ignoredSafeties: [] }));
    await store.phases.record(d.id, "starting", "running", "2026-01-01T00:00:00.000Z");
    await store.phases.record(d.id, "checks", "waiting", "2026-01-01T00:00:01.000Z");
    await store.phases.record(d.id, "deploy", "running", "2026-01-01T00:00:05.000Z");
    const other = await store.deploys.create(newDeploy({ env: "production" }), () => ({
      ignoredSafeties: [],
    }));
    await store.phases.record(other.id, "starting", "running");
    expect(await store.phases.list(d.id)).toEqual([
      { phase: "starting", status: "running", at: "2026-01-01T00:00:00.000Z" },
      { phase: "checks", status: "waiting", at: "2026-01-01T00:00:01.000Z" },
      { phase: "deploy", status: "running", at: "2026-01-01T00:00:05.000Z" },
    ]);
    expect(await store.phases.list(other.id)).toHaveLength(1);
  });

  it("keeps a deploy's commit description, the first one recorded, and returns it with the deploy", async () => {
    const d = await store.deploys.create(newDeploy(), () => ({ ignoredSafeties: [] }));
    expect(d.commit).toBeNull();
    const described = { sha: SHA, subject: "Fix the cart", author: "Ada", date: "2026-01-01T10:00:00+01:00" };
    await store.commits.record(d.id, { main: described });
    await store.commits.record(d.id, { main: { ...described, subject: "other" } });
    const read = await store.deploys.get(d.id);
    expect(read.commit).toEqual(described);
    expect(read.commits).toEqual({ main: described });
    expect((await store.commits.deploys([d.id, d.id]))[0]?.commit?.subject).toBe("Fix the cart");
  });

  it("saves undeployed counts per environment, replacing the previous one", async () => {
    await store.undeployed.save({
      app: "shop",
      env: "staging",
      baseReleaseId: null,
      newestSha: SHA,
      count: 3,
      truncated: false,
    });
    await store.undeployed.save({
      app: "shop",
      env: "staging",
      baseReleaseId: 7,
      newestSha: null,
      count: 0,
      truncated: false,
    });
    await store.undeployed.save({
      app: "blog",
      env: "live",
      baseReleaseId: 2,
      newestSha: SHA,
      count: 1000,
      truncated: true,
    });
    const rows = await store.undeployed.list(["shop", "blog", "none"]);
    const byKey = Object.fromEntries(rows.map((r) => [`${r.app}/${r.env}`, r]));
    expect(byKey["shop/staging"]).toMatchObject({
      baseReleaseId: 7,
      newestSha: null,
      count: 0,
      truncated: false,
    });
    expect(byKey["blog/live"]).toMatchObject({ count: 1000, truncated: true });
    expect(rows).toHaveLength(2);
    expect(await store.undeployed.list(["shop"])).toHaveLength(1);
  });

  it("counts an environment's outcomes per day, its failure rate and its time to restore", async () => {
    await finished(store, "succeeded");
    await finished(store, "failed");
    await finished(store, "failed");
    await finished(store, "succeeded");
    await finished(store, "succeeded", { env: "production" });
    const stats = await store.stats.environment("shop", "staging", 30);
    expect(stats.days).toHaveLength(30);
    expect(stats.days.at(-1)).toMatchObject({
      day: new Date().toISOString().slice(0, 10),
      succeeded: 2,
      failed: 2,
    });
    expect(stats.deploys).toBe(4);
    expect(stats.failureRate).toBe(0.5);
    // Two failures in a row are one incident, restored by the next success.
    expect(stats.restore).toMatchObject({ incidents: 1, restored: 1, openSince: null });
    expect(stats.restore.meanMs).toBeGreaterThanOrEqual(0);
    expect(await store.stats.typicalDuration("shop", "staging")).not.toBeNull();
    expect(await store.stats.typicalDuration("shop", "nowhere")).toBeNull();
  });

  it("lists what a host ran, newest first, only the apps a token may see", async () => {
    const host = await store.fleet.ensureSshHost("shop", "web-1", "10.0.0.1", {});
    const shop = await store.deploys.create(newDeploy(), () => ({ ignoredSafeties: [] }));
    const blog = await store.deploys.create(newDeploy({ app: "blog" }), () => ({ ignoredSafeties: [] }));
    await store.fleet.addDeployHosts(shop.id, [{ id: host.id, name: "web-1" }], "r-shop");
    await store.fleet.addDeployHosts(blog.id, [{ id: host.id, name: "web-1" }], "r-blog");
    await store.fleet.updateDeployHost(shop.id, host.id, {
      step: "healthy",
      switched: true,
      previousRelease: "r-0",
    });
    const all = await store.hostHistory.ofHost("web-1", null, 10);
    expect(all.map((h) => [h.app, h.releaseId])).toEqual([
      ["blog", "r-blog"],
      ["shop", "r-shop"],
    ]);
    expect(all[1]).toMatchObject({
      step: "healthy",
      switched: true,
      previousRelease: "r-0",
      number: 1,
      sha: SHA,
      rollbackOf: null,
      selfHeal: false,
    });
    // When it switched is recorded with the switch; a host never switched has none.
    expect(all[1]!.switchedAt).toMatch(/^\d{4}-\d\d-\d\dT/);
    expect(all[0]!.switchedAt).toBeNull();
    expect((await store.hostHistory.ofHost("web-1", null, 10, "blog")).map((h) => h.app)).toEqual(["blog"]);
    expect((await store.hostHistory.ofHost("web-1", ["shop"], 10)).map((h) => h.app)).toEqual(["shop"]);
    expect(await store.hostHistory.ofHost("web-1", [], 10)).toEqual([]);
    expect(await store.hostHistory.ofHost("web-2", null, 10)).toEqual([]);
  });

  it("exchanges a sign-in code once for a token of the same role and apps that expires", async () => {
    const { info: creatorInfo } = await store.tokens.create({
      name: "ops",
      role: "deployer",
      apps: ["shop"],
      createdBy: "root",
    });
    const creator: Principal = { tokenId: creatorInfo.id, name: "ops", role: "deployer", apps: ["shop"] };
    const { code, expiresAt } = await store.loginCodes.issue(creator, 60_000);
    expect(Date.parse(expiresAt)).toBeGreaterThan(Date.now());
    const { token, info } = await store.loginCodes.redeem(code, 3_600_000);
    expect(info).toMatchObject({ role: "deployer", apps: ["shop"], createdBy: "ops" });
    expect(info.name).toMatch(/^ui-ops-[0-9a-f]{8}$/);
    expect(Date.parse(info.expiresAt!)).toBeGreaterThan(Date.now() + 3_500_000);
    expect(await store.tokens.authenticate(token)).toMatchObject({ name: info.name, role: "deployer" });
    // Single use.
    await expect(store.loginCodes.redeem(code, 3_600_000)).rejects.toMatchObject({ code: "E_UNAUTHORIZED" });
    // Unknown and malformed codes get the same answer.
    await expect(store.loginCodes.redeem("x".repeat(32), 1000)).rejects.toMatchObject({
      code: "E_UNAUTHORIZED",
    });
    await expect(store.loginCodes.redeem("../../etc", 1000)).rejects.toMatchObject({
      code: "E_UNAUTHORIZED",
    });
  });

  it("refuses an expired code and a code whose creator's token was revoked", async () => {
    const expired = await store.loginCodes.issue(admin, -1);
    await expect(store.loginCodes.redeem(expired.code, 1000)).rejects.toMatchObject({
      code: "E_UNAUTHORIZED",
    });
    const { info } = await store.tokens.create({
      name: "gone",
      role: "admin",
      apps: null,
      createdBy: "root",
    });
    const issued = await store.loginCodes.issue(
      { tokenId: info.id, name: "gone", role: "admin", apps: null },
      60_000,
    );
    await store.tokens.revoke("gone", "root");
    await expect(store.loginCodes.redeem(issued.code, 1000)).rejects.toMatchObject({
      code: "E_UNAUTHORIZED",
    });
  });

  it("stops authenticating a token once it expired", async () => {
    const { token } = await store.tokens.create({
      name: "brief",
      role: "viewer",
      apps: null,
      createdBy: "root",
      expiresAt: new Date(Date.now() + 300).toISOString(),
    });
    expect(await store.tokens.authenticate(token)).toMatchObject({ name: "brief" });
    await new Promise((r) => setTimeout(r, 400));
    expect(await store.tokens.authenticate(token)).toBeUndefined();
  });
});
