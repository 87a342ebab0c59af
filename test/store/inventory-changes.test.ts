import { beforeEach, describe, expect, it } from "vitest";
import type { Store } from "../../src/store/store.js";
import { BACKENDS, useTestStore } from "../helpers/databases.js";

const enroll = (store: Store, name: string) =>
  store.hosts.enrollAgent({ name, labels: {}, owner: "s1", tokenHash: null, grant: null });

describe.each(BACKENDS)("agent inventory changes on %s", (backend) => {
  const current = useTestStore(backend);
  let store: Store;
  beforeEach(() => {
    store = current();
  });

  it("upserts changed apps and removes gone ones, for many hosts in one turn, each settled once written", async () => {
    const a = await enroll(store, "web-1");
    const b = await enroll(store, "web-2");
    await store.hosts.saveInventory(a.id, [
      { app: "shop", releases: ["r1"], current: "r1", slots: {} },
      { app: "blog", releases: ["b1"], current: "b1", slots: {} },
    ]);
    const before = store.queries();
    await Promise.all([
      store.hosts.saveInventoryChanges(a.id, {
        changed: [{ app: "shop", releases: ["r1", "r2"], current: "r2", slots: { next: "r2" } }],
        removed: [{ app: "blog" }],
      }),
      store.hosts.saveInventoryChanges(
        b.id,
        { changed: [{ app: "shop", releases: ["r2"], current: "r2", slots: {} }], removed: [] },
        { owner: "s1", at: "2026-12-07T04:00:00.000Z" },
      ),
    ]);
    // One transaction for both hosts. SQLite: BEGIN, upsert, delete, update, upsert, COMMIT;
    // PostgreSQL (a statement is a round trip): BEGIN, one upsert for both hosts, delete, update, COMMIT.
    expect(store.queries() - before).toBe(backend === "postgres" ? 5 : 6);
    const web1 = await store.hosts.get("web-1");
    expect(web1?.apps).toEqual([
      { app: "shop", releases: ["r1", "r2"], current: "r2", slots: { next: "r2" } },
    ]);
    const web2 = await store.hosts.get("web-2");
    expect(web2?.apps).toEqual([{ app: "shop", releases: ["r2"], current: "r2", slots: {} }]);
    expect(web2?.lastSeenAt).toBe("2026-12-07T04:00:00.000Z");
    // Last seen only for the host still held by that server.
    await store.hosts.saveInventoryChanges(
      a.id,
      { changed: [], removed: [] },
      { owner: "s2", at: "2026-12-07T05:00:00.000Z" },
    );
    expect((await store.hosts.get("web-1"))?.lastSeenAt).not.toBe("2026-12-07T05:00:00.000Z");
  });

  it("writes last-seen marks that arrive spread out as one statement (PostgreSQL), for this owner's hosts only", async () => {
    const hosts = [];
    for (const name of ["web-1", "web-2", "web-3", "web-4"]) hosts.push(await enroll(store, name));
    // web-4 has since moved to another server: a mark of s1 must not touch it.
    await store.hosts.enrollAgent({ name: "web-4", labels: {}, owner: "s2", tokenHash: null, grant: null });
    const before = store.queries();
    const marks: Promise<void>[] = [];
    // Heartbeats come a few milliseconds apart, each in a turn of its own.
    for (const [i, h] of hosts.entries()) {
      marks.push(store.hosts.markSeen(h.id, "s1", `2026-12-07T06:00:0${i}.000Z`));
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    // Two marks of one host in a group: the later time stands.
    marks.push(store.hosts.markSeen(hosts[0]!.id, "s1", "2026-12-07T06:00:09.000Z"));
    await Promise.all(marks);
    // PostgreSQL: one UPDATE for all of them; SQLite: one per mark (each in its turn's commit).
    if (backend === "postgres") expect(store.queries() - before).toBe(1);
    else expect(store.queries() - before).toBeGreaterThanOrEqual(5);
    const seen = await Promise.all(["web-1", "web-2", "web-3", "web-4"].map((n) => store.hosts.get(n)));
    expect(seen.map((h) => h?.lastSeenAt)).toEqual([
      "2026-12-07T06:00:09.000Z",
      "2026-12-07T06:00:01.000Z",
      "2026-12-07T06:00:02.000Z",
      expect.not.stringMatching(/^2026-12-07T06:00:03/),
    ]);
  });

  it("writes a turn of plain reports from many hosts as one statement (PostgreSQL) or one commit (SQLite)", async () => {
    const hosts = [];
    for (const name of ["web-1", "web-2", "web-3"]) hosts.push(await enroll(store, name));
    for (const h of hosts)
      await store.hosts.saveInventory(h.id, [{ app: "shop", releases: ["r1"], current: "r1", slots: {} }]);
    const before = store.queries();
    await Promise.all(
      hosts.map((h, i) =>
        store.hosts.saveInventoryChanges(h.id, {
          changed: [{ app: "shop", releases: ["r1", `r${i + 2}`], current: `r${i + 2}`, slots: {} }],
          removed: [],
        }),
      ),
    );
    // PostgreSQL: one upsert, no BEGIN and COMMIT; SQLite: the turn's group commit (BEGIN, 3 upserts, COMMIT).
    expect(store.queries() - before).toBe(backend === "postgres" ? 1 : 5);
    for (const [i, name] of ["web-1", "web-2", "web-3"].entries()) {
      expect((await store.hosts.get(name))?.apps).toEqual([
        { app: "shop", releases: ["r1", `r${i + 2}`], current: `r${i + 2}`, slots: {} },
      ]);
    }
  });

  it("writes reports that arrive spread out as one statement (PostgreSQL), each settled once written", async () => {
    const hosts = [];
    for (const name of ["web-1", "web-2", "web-3", "web-4"]) hosts.push(await enroll(store, name));
    for (const h of hosts)
      await store.hosts.saveInventory(h.id, [{ app: "shop", releases: ["r1"], current: "r1", slots: {} }]);
    const before = store.queries();
    const reports: Promise<void>[] = [];
    // Hosts of a fleet batch report as each finishes its step, a few milliseconds apart.
    for (const [i, h] of hosts.entries()) {
      reports.push(
        store.hosts.saveInventoryChanges(h.id, {
          changed: [{ app: "shop", releases: ["r1", "r2"], current: "r2", slots: { [`s${i}`]: "r2" } }],
          removed: [],
        }),
      );
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    await Promise.all(reports);
    // PostgreSQL: one upsert for all four. SQLite: one upsert per report, written in the turn it
    // came in (a lone statement needs no BEGIN and COMMIT; reports that a loaded machine lets
    // arrive in the same turn share one commit, with BEGIN and COMMIT around them).
    const statements = store.queries() - before;
    if (backend === "postgres") expect(statements).toBe(1);
    else expect([4, 6, 8]).toContain(statements);
    for (const [i, name] of ["web-1", "web-2", "web-3", "web-4"].entries()) {
      expect((await store.hosts.get(name))?.apps).toEqual([
        { app: "shop", releases: ["r1", "r2"], current: "r2", slots: { [`s${i}`]: "r2" } },
      ]);
    }
  });

  it("keeps one record per app and deploy path: two layouts of one app on one host, changed and removed apart", async () => {
    const a = await enroll(store, "web-1");
    const staging = "/var/www/shop-staging";
    await store.hosts.saveInventory(a.id, [
      { app: "shop", releases: ["r1"], current: "r1", slots: {} },
      { app: "shop", path: staging, releases: ["r1", "r2"], current: "r2", slots: {} },
    ]);
    expect((await store.hosts.get("web-1"))?.apps).toEqual([
      { app: "shop", releases: ["r1"], current: "r1", slots: {} },
      { app: "shop", path: staging, releases: ["r1", "r2"], current: "r2", slots: {} },
    ]);
    await store.hosts.saveInventoryChanges(a.id, {
      changed: [{ app: "shop", path: staging, releases: ["r2", "r3"], current: "r3", slots: {} }],
      removed: [],
    });
    expect((await store.hosts.get("web-1"))?.apps.map((x) => [x.path ?? null, x.current])).toEqual([
      [null, "r1"],
      [staging, "r3"],
    ]);
    // Removing the default layout leaves the one at the path (and the other way round).
    await store.hosts.saveInventoryChanges(a.id, { changed: [], removed: [{ app: "shop" }] });
    expect((await store.hosts.list()).find((h) => h.name === "web-1")?.apps).toEqual([
      { app: "shop", path: staging, releases: ["r2", "r3"], current: "r3", slots: {} },
    ]);
    await store.hosts.saveInventoryChanges(a.id, { changed: [], removed: [{ app: "shop", path: staging }] });
    expect((await store.hosts.get("web-1"))?.apps).toEqual([]);
  });

  it("fails the change its database refuses; on PostgreSQL with every change of its turn", async () => {
    const a = await enroll(store, "web-1");
    const results = await Promise.allSettled([
      store.hosts.saveInventoryChanges(a.id, {
        changed: [{ app: "shop", releases: ["r1"], current: "r1", slots: {} }],
        removed: [],
      }),
      // A record the table refuses (no app): the turn's transaction fails. On SQLite (GroupCommit)
      // each change is then written alone, so only this one fails.
      store.hosts.saveInventoryChanges(a.id, {
        changed: [{ app: null as unknown as string, releases: [], current: null, slots: {} }],
        removed: [],
      }),
    ]);
    if (backend === "sqlite") {
      expect(results.map((r) => r.status)).toEqual(["fulfilled", "rejected"]);
      expect((await store.hosts.get("web-1"))?.apps).toEqual([
        { app: "shop", releases: ["r1"], current: "r1", slots: {} },
      ]);
    } else {
      expect(results.map((r) => r.status)).toEqual(["rejected", "rejected"]);
      expect((await store.hosts.get("web-1"))?.apps).toEqual([]);
    }
  });
});
