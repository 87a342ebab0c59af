import Database from "better-sqlite3";
import { Kysely, SqliteDialect } from "kysely";
import { beforeEach, describe, expect, it, vi } from "vitest";
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
      const fleet = new FleetStore(db);
      const transaction = vi.spyOn(db, "transaction");
      await Promise.all(hosts.map((h) => fleet.updateDeployHost(deploy.id, h.id, { step: "switching" })));
      expect(transaction).toHaveBeenCalledTimes(1);
      await fleet.updateDeployHost(deploy.id, hosts[0]!.id, { step: "switched" });
      expect(transaction).toHaveBeenCalledTimes(2);
      const steps = (await fleet.deployHosts(deploy.id)).map((r) => r.step);
      expect(steps.filter((s) => s === "switching")).toHaveLength(19);
      expect(steps.filter((s) => s === "switched")).toHaveLength(1);
    } finally {
      await db.destroy();
      await database.drop();
    }
  });
});
