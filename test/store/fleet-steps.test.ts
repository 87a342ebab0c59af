import Database from "better-sqlite3";
import { Kysely, SqliteDialect } from "kysely";
import { beforeEach, describe, expect, it, vi } from "vitest";
import { SQLITE } from "../../src/store/capabilities.js";
import { FleetStore } from "../../src/store/fleet.js";
import type { Schema } from "../../src/store/schema.js";
import type { Store } from "../../src/store/store.js";
import { BACKENDS, createTestDatabase, useTestStore } from "../helpers/databases.js";
import { newDeploy } from "./fixtures.js";

async function deployWithHosts(store: Store, count: number) {
  const deploy = await store.deploys.create(newDeploy({ env: "production" }), () => ({
    ignoredSafeties: [],
  }));
  const hosts = [];
  for (let i = 1; i <= count; i++)
    hosts.push(
      await store.hosts.enrollAgent({
        name: `web-${i}`,
        labels: {},
        owner: "s1",
        tokenHash: null,
        grant: null,
      }),
    );
  await store.fleet.addDeployHosts(deploy.id, hosts, "r1");
  return { deploy, hosts };
}

describe.each(BACKENDS)("fleet host steps on %s", (backend) => {
  const current = useTestStore(backend);
  let store: Store;
  beforeEach(() => {
    store = current();
  });

  it("writes the updates of one turn together, in the order asked, each settled once written", async () => {
    const { deploy, hosts } = await deployWithHosts(store, 10);
    const updates = hosts.map((h) => store.fleet.updateDeployHost(deploy.id, h.id, { step: "staging" }));
    updates.push(store.fleet.updateDeployHost(deploy.id, hosts[0]!.id, { step: "staged", bytesFetched: 7 }));
    await Promise.all(updates);
    const rows = await store.fleet.deployHosts(deploy.id);
    const byName = Object.fromEntries(rows.map((r) => [r.hostName, r]));
    expect(byName["web-1"]).toMatchObject({ step: "staged", bytesFetched: 7 });
    for (let i = 2; i <= 10; i++) expect(byName[`web-${i}`]!.step).toBe("staging");
    // A later turn is a write of its own, on top.
    await store.fleet.updateDeployHost(deploy.id, hosts[1]!.id, { step: "stage_failed", error: "disk full" });
    expect((await store.fleet.deployHosts(deploy.id)).find((r) => r.hostName === "web-2")).toMatchObject({
      step: "stage_failed",
      error: "disk full",
    });
  });

  it("keeps each host's own fields when hosts of one turn set different ones (null included)", async () => {
    const { deploy, hosts } = await deployWithHosts(store, 4);
    const [a, b, c, d] = hosts as [
      (typeof hosts)[0],
      (typeof hosts)[0],
      (typeof hosts)[0],
      (typeof hosts)[0],
    ];
    await store.fleet.updateDeployHost(deploy.id, a.id, { step: "failed", error: "boom", bytesFetched: 12 });
    await Promise.all([
      store.fleet.updateDeployHost(deploy.id, a.id, { step: "rolled_back", switched: false }),
      store.fleet.updateDeployHost(deploy.id, b.id, {
        step: "switched",
        previousRelease: null,
        switched: true,
      }),
      store.fleet.updateDeployHost(deploy.id, c.id, { step: "switching", batch: 3 }),
      store.fleet.updateDeployHost(deploy.id, d.id, { step: "staged", bytesFetched: 5_000_000_000 }),
    ]);
    const byName = Object.fromEntries((await store.fleet.deployHosts(deploy.id)).map((r) => [r.hostName, r]));
    expect(byName["web-1"]).toMatchObject({
      step: "rolled_back",
      error: "boom",
      bytesFetched: 12,
      switched: false,
    });
    expect(byName["web-2"]).toMatchObject({
      step: "switched",
      previousRelease: null,
      switched: true,
      batch: null,
    });
    expect(byName["web-3"]).toMatchObject({ step: "switching", batch: 3, switched: false, error: null });
    expect(byName["web-4"]).toMatchObject({ step: "staged", bytesFetched: 5_000_000_000 });
  });

  it("writes one turn's updates of many hosts in one statement where the database takes arrays", async () => {
    const { deploy, hosts } = await deployWithHosts(store, 10);
    const before = store.queries();
    await Promise.all(
      hosts.map((h, i) => store.fleet.updateDeployHost(deploy.id, h.id, { step: "switching", batch: i })),
    );
    // PostgreSQL: one UPDATE; SQLite: BEGIN, one UPDATE per host, COMMIT (statements there are not round trips).
    expect(store.queries() - before).toBe(backend === "postgres" ? 1 : 12);
    const rows = await store.fleet.deployHosts(deploy.id);
    expect(rows.map((r) => r.batch).sort((x, y) => x! - y!)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  });

  it("writes a batch's hosts answering a moment apart, and their targets, in one statement where the database takes arrays", async () => {
    const { deploy, hosts } = await deployWithHosts(store, 4);
    const before = store.queries();
    const writes: Promise<void>[] = [];
    // Hosts of a fleet batch answer a little apart, each in a turn of its own; each switched host's
    // step and target are asked for together (orchestrator.ts switched()).
    for (const [i, h] of hosts.entries()) {
      writes.push(
        store.fleet.updateDeployHost(deploy.id, h.id, {
          step: "switched",
          switched: true,
          previousRelease: "r0",
        }),
        store.fleet.setTarget({
          hostId: h.id,
          app: "shop",
          env: "production",
          desiredRelease: "r1",
          actualRelease: "r1",
          previousRelease: "r0",
          deployId: deploy.id,
        }),
      );
      if (i < hosts.length - 1) await new Promise((resolve) => setImmediate(resolve));
    }
    await Promise.all(writes);
    // PostgreSQL: one statement (the targets' upsert in front of the steps' UPDATE); SQLite: a group
    // commit per turn (BEGIN, the update, the upsert, COMMIT), statements there are no round trips.
    expect(store.queries() - before).toBe(backend === "postgres" ? 1 : 16);
    const rows = await store.fleet.deployHosts(deploy.id);
    expect(rows.map((r) => [r.step, r.switched, r.previousRelease])).toEqual(
      hosts.map(() => ["switched", true, "r0"]),
    );
    const targets = await store.fleet.targets("shop", "production");
    expect(targets.map((t) => t.actualRelease)).toEqual(hosts.map(() => "r1"));
  });
});

describe.each(BACKENDS)("host targets on %s", (backend) => {
  const current = useTestStore(backend);
  let store: Store;
  beforeEach(() => {
    store = current();
  });

  it("writes one turn's targets together; a host set twice in a turn ends on the later", async () => {
    const { deploy, hosts } = await deployWithHosts(store, 5);
    const target = (hostId: number, release: string) => ({
      hostId,
      app: "shop",
      env: "production",
      desiredRelease: release,
      actualRelease: release,
      previousRelease: "r0",
      deployId: deploy.id,
    });
    await store.fleet.setTarget(target(hosts[0]!.id, "r0"));
    const before = store.queries();
    await Promise.all([
      ...hosts.map((h) => store.fleet.setTarget(target(h.id, "r1"))),
      store.fleet.setTarget(target(hosts[4]!.id, "r2")),
    ]);
    // PostgreSQL: one upsert for the turn; SQLite: the turn's group commit (BEGIN, 6 upserts, COMMIT).
    expect(store.queries() - before).toBe(backend === "postgres" ? 1 : 8);
    const byHost = new Map((await store.fleet.targets("shop", "production")).map((t) => [t.hostId, t]));
    expect(hosts.map((h) => byHost.get(h.id)?.actualRelease)).toEqual(["r1", "r1", "r1", "r1", "r2"]);
    expect(byHost.get(hosts[0]!.id)).toMatchObject({
      desiredRelease: "r1",
      previousRelease: "r0",
      deployId: deploy.id,
    });
  });
});

describe("fleet host steps, group commit", () => {
  it("makes one transaction of a turn's updates (one flush, not one per host)", async () => {
    const database = await createTestDatabase("sqlite");
    const store = await database.open();
    const db = new Kysely<Schema>({
      dialect: new SqliteDialect({ database: new Database(database.sqliteFile!) }),
    });
    try {
      const { deploy, hosts } = await deployWithHosts(store, 20);
      await store.close();
      const fleet = new FleetStore(db, SQLITE);
      const transaction = vi.spyOn(db, "transaction");
      await Promise.all(hosts.map((h) => fleet.updateDeployHost(deploy.id, h.id, { step: "switching" })));
      expect(transaction).toHaveBeenCalledTimes(1);
      // A turn with one update is one statement, atomic without a transaction around it.
      await fleet.updateDeployHost(deploy.id, hosts[0]!.id, { step: "switched" });
      expect(transaction).toHaveBeenCalledTimes(1);
      const steps = (await fleet.deployHosts(deploy.id)).map((r) => r.step);
      expect(steps.filter((s) => s === "switching")).toHaveLength(19);
      expect(steps.filter((s) => s === "switched")).toHaveLength(1);
    } finally {
      await db.destroy();
      await database.drop();
    }
  });
});
