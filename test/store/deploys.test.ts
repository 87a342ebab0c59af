import { beforeEach, describe, expect, it } from "vitest";
import { TurnoutError } from "../../src/domain/errors.js";
import { checkLock } from "../../src/domain/lock.js";
import type { Principal } from "../../src/domain/roles.js";
import type { Store } from "../../src/store/store.js";
import { BACKENDS, useTestStore } from "../helpers/databases.js";
import { newDeploy, SHA } from "./fixtures.js";

const admin: Principal = { tokenId: 1, name: "root", role: "admin", apps: null };
const deployer: Principal = { tokenId: 2, name: "dev", role: "deployer", apps: null };

describe.each(BACKENDS)("deploy store on %s", (backend) => {
  const current = useTestStore(backend);
  let store: Store;
  beforeEach(() => {
    store = current();
  });

  it("numbers deploys per environment", async () => {
    const a = await store.deploys.create(newDeploy(), () => ({ ignoredSafeties: [] }));
    const b = await store.deploys.create(newDeploy(), () => ({ ignoredSafeties: [] }));
    const c = await store.deploys.create(newDeploy({ env: "production" }), () => ({ ignoredSafeties: [] }));
    expect([a.number, b.number, c.number]).toEqual([1, 2, 1]);
    expect(a.status).toBe("queued");
  });

  it("sets a deploy's phase with its timeline entry in one statement on PostgreSQL, only for the lease holder", async () => {
    await store.deploys.create(newDeploy(), () => ({ ignoredSafeties: [] }));
    const claimed = (await store.deploys.claimNext("w1", 30_000))!;
    const entries = (await store.phases.list(claimed.id)).length;
    const before = store.queries();
    await store.deploys.setPhase(claimed.id, "w1", "batch 1/3", "running");
    // PostgreSQL: the update and the entry are one statement; SQLite: BEGIN, update, insert, COMMIT.
    expect(store.queries() - before).toBe(backend === "postgres" ? 1 : 4);
    await store.deploys.setPhase(claimed.id, "w1", "batch 2/3");
    expect(await store.deploys.get(claimed.id)).toMatchObject({ phase: "batch 2/3", status: "running" });
    const list = await store.phases.list(claimed.id);
    expect(list.slice(entries).map((p) => [p.phase, p.status])).toEqual([
      ["batch 1/3", "running"],
      ["batch 2/3", "running"],
    ]);
    // Another owner's change writes nothing, neither the phase nor an entry.
    await store.deploys.setPhase(claimed.id, "w2", "batch 3/3");
    expect((await store.deploys.get(claimed.id))?.phase).toBe("batch 2/3");
    expect(await store.phases.list(claimed.id)).toHaveLength(entries + 2);
  });

  it("numbers 30 concurrent creations without gaps or duplicates", async () => {
    const created = await Promise.all(
      Array.from({ length: 30 }, () => store.deploys.create(newDeploy(), () => ({ ignoredSafeties: [] }))),
    );
    expect(created.map((d) => d.number).sort((x, y) => x - y)).toEqual(
      Array.from({ length: 30 }, (_, i) => i + 1),
    );
  });

  it("refuses a second active deploy per environment at the schema level", async () => {
    const a = await store.deploys.create(newDeploy(), () => ({ ignoredSafeties: [] }));
    const b = await store.deploys.create(newDeploy(), () => ({ ignoredSafeties: [] }));
    const claimed = await store.deploys.claimNext("w1", 30_000);
    expect(claimed?.id).toBe(a.id);
    // Nothing else is claimable in that environment while a runs.
    expect(await store.deploys.claimNext("w2", 30_000)).toBeUndefined();
    // And even a direct write cannot make b active too.
    const raw = (store as unknown as { database: { db: import("kysely").Kysely<any> } }).database.db;
    await expect(
      raw.updateTable("deploys").set({ status: "running" }).where("id", "=", b.id).execute(),
    ).rejects.toThrow();
  });

  it("refuses duplicate deploy numbers at the schema level", async () => {
    const a = await store.deploys.create(newDeploy(), () => ({ ignoredSafeties: [] }));
    const raw = (store as unknown as { database: { db: import("kysely").Kysely<any> } }).database.db;
    const { id: _id, ...row } = await raw
      .selectFrom("deploys")
      .selectAll()
      .where("id", "=", a.id)
      .executeTakeFirstOrThrow();
    await expect(raw.insertInto("deploys").values(row).execute()).rejects.toThrow();
  });

  it("an idle claim is one read on PostgreSQL, and a queued deploy is still claimed", async () => {
    const before = store.queries();
    expect(await store.deploys.claimNext("w", 30_000)).toBeUndefined();
    // PostgreSQL: a look for anything queued, not BEGIN, the candidate read and COMMIT.
    expect(store.queries() - before).toBe(backend === "postgres" ? 1 : 3);
    const queued = await store.deploys.create(newDeploy(), () => ({ ignoredSafeties: [] }));
    expect((await store.deploys.claimNext("w", 30_000))?.id).toBe(queued.id);
  });

  it("claims FIFO per environment and lets environments run side by side", async () => {
    const s1 = await store.deploys.create(newDeploy(), () => ({ ignoredSafeties: [] }));
    const s2 = await store.deploys.create(newDeploy(), () => ({ ignoredSafeties: [] }));
    const p1 = await store.deploys.create(newDeploy({ env: "production" }), () => ({ ignoredSafeties: [] }));
    const first = await store.deploys.claimNext("w", 30_000);
    const second = await store.deploys.claimNext("w", 30_000);
    expect([first?.id, second?.id]).toEqual([s1.id, p1.id]);
    expect(await store.deploys.claimNext("w", 30_000)).toBeUndefined();
    await store.deploys.finish(s1.id, "w", { status: "failed", errorCode: "command_failed" });
    expect((await store.deploys.claimNext("w", 30_000))?.id).toBe(s2.id);
  });

  it("records a release and the current release when a deploy succeeds", async () => {
    const d = await store.deploys.create(newDeploy(), () => ({ ignoredSafeties: [] }));
    await store.deploys.claimNext("w", 30_000);
    const done = await store.deploys.finish(d.id, "w", {
      status: "succeeded",
      release: { fingerprint: "f".repeat(64), environmentConfig: { x: 1 } },
    });
    expect(done.status).toBe("succeeded");
    const current = await store.releases.current("shop", "staging");
    expect(current?.deployNumber).toBe(1);
    expect(current?.components).toEqual({ main: SHA });
    expect(current?.environmentConfig).toEqual({ x: 1 });
    const next = await store.deploys.create(newDeploy(), () => ({ ignoredSafeties: [] }));
    expect(next.previousSha).toBe(SHA);
  });

  it("only the lease owner finishes a deploy, and a lost lease is reported", async () => {
    const d = await store.deploys.create(newDeploy(), () => ({ ignoredSafeties: [] }));
    await store.deploys.claimNext("w1", 30_000);
    await expect(store.deploys.finish(d.id, "w2", { status: "succeeded" })).rejects.toThrow(TurnoutError);
    expect((await store.deploys.renewLease(d.id, "w1", 30_000)).held).toBe(true);
    expect((await store.deploys.renewLease(d.id, "w2", 30_000)).held).toBe(false);
  });

  it("recovers expired leases as interrupted", async () => {
    const d = await store.deploys.create(newDeploy(), () => ({ ignoredSafeties: [] }));
    await store.deploys.claimNext("w1", -1000);
    const abandoned = await store.deploys.abandoned(() => false);
    expect(abandoned.map((a) => a.deploy.id)).toEqual([d.id]);
    expect(await store.deploys.markInterrupted(d.id, "w1", "server stopped")).toBe(true);
    const after = await store.deploys.get(d.id);
    expect(after.status).toBe("failed");
    expect(after.errorCode).toBe("interrupted");
    expect((await store.logs.read(d.id, 0)).chunks.map((c) => c.text).join("")).toContain("interrupted");
    expect(await store.deploys.abandoned(() => false)).toEqual([]);
  });

  it("cancels a queued deploy at once and flags a running one", async () => {
    const a = await store.deploys.create(newDeploy(), () => ({ ignoredSafeties: [] }));
    const b = await store.deploys.create(newDeploy(), () => ({ ignoredSafeties: [] }));
    await store.deploys.claimNext("w", 30_000);
    expect((await store.deploys.requestCancel(b.id, "ops")).status).toBe("cancelled");
    // The note lands in the same transaction as the state change.
    expect((await store.logs.read(b.id, 0)).chunks.map((c) => c.text).join("")).toBe(
      "==> cancelled by ops before it started\n",
    );
    const running = await store.deploys.requestCancel(a.id, "ops");
    expect(running.status).toBe("running");
    expect((await store.deploys.renewLease(a.id, "w", 30_000)).cancelRequested).toBe(true);
    await expect(store.deploys.requestCancel(b.id, "ops")).rejects.toMatchObject({
      code: "E_NOT_CANCELLABLE",
    });
  });

  it("checks the lock inside the creating transaction", async () => {
    await store.locks.lock("shop", "staging", "ops", "incident 12");
    await expect(
      store.deploys.create(newDeploy(), (lock) => checkLock(lock, deployer, false)),
    ).rejects.toMatchObject({
      code: "E_LOCKED",
    });
    const forced = await store.deploys.create(newDeploy({ force: true }), (lock) =>
      checkLock(lock, admin, true),
    );
    expect(forced.ignoredSafeties).toEqual(["lock"]);
    expect(forced.force).toBe(true);
    // The refused deploy left no trace; the forced one is recorded with what it ignored.
    const audit = await store.audit.list({ app: "shop", limit: 10 });
    expect(audit.map((e) => e.action)).toEqual(["deploy", "lock"]);
    expect(audit[0]).toMatchObject({ target: "shop/staging#1", details: { ignoredSafeties: ["lock"] } });
    await store.locks.unlock("shop", "staging", "ops");
    expect((await store.audit.list({ app: "shop", limit: 10 })).map((e) => e.action)).toEqual([
      "unlock",
      "deploy",
      "lock",
    ]);
  });

  it("pages the deploy list newest first", async () => {
    for (let i = 0; i < 5; i++) await store.deploys.create(newDeploy(), () => ({ ignoredSafeties: [] }));
    const page1 = await store.deploys.list({ limit: 2 });
    const page2 = await store.deploys.list({ limit: 2, before: page1[1]!.id });
    expect(page1.map((d) => d.number)).toEqual([5, 4]);
    expect(page2.map((d) => d.number)).toEqual([3, 2]);
  });

  it("summarises many environments at once: lock, current release, active deploy, queue length", async () => {
    const first = await store.deploys.create(newDeploy(), () => ({ ignoredSafeties: [] }));
    await store.deploys.claimNext("w", 30_000);
    await store.deploys.finish(first.id, "w", {
      status: "succeeded",
      release: { fingerprint: "f".repeat(64), environmentConfig: {} },
    });
    await store.deploys.create(newDeploy(), () => ({ ignoredSafeties: [] }));
    await store.deploys.create(newDeploy(), () => ({ ignoredSafeties: [] }));
    await store.deploys.create(newDeploy(), () => ({ ignoredSafeties: [] }));
    await store.deploys.claimNext("w", 30_000);
    await store.locks.lock("shop", "production", "ops", "freeze");
    await store.deploys.create(newDeploy({ app: "other" }), () => ({ ignoredSafeties: [] }));
    const overview = await store.overview.environments(["shop"]);
    const staging = overview.get("shop/staging");
    expect(staging?.queued).toBe(2);
    expect(staging?.active?.number).toBe(2);
    expect(staging?.current?.sha).toBe(SHA);
    expect(staging?.current?.release.deployNumber).toBe(1);
    expect(overview.get("shop/production")?.lock?.reason).toBe("freeze");
    expect(overview.has("other/staging")).toBe(false);
  });
});
