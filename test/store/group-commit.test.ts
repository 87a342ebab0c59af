import { beforeEach, describe, expect, it } from "vitest";
import type { Store } from "../../src/store/store.js";
import { useTestStore } from "../helpers/databases.js";
import { newDeploy } from "./fixtures.js";

/**
 * SQLite: the writes a fleet's hosts cause in one turn of the event loop —
 * step updates, inventory reports, last seen, targets — are one transaction
 * whichever store makes them (store/group-commit.ts): one flush, not one per
 * store and host.
 */
describe("group commit across stores (SQLite)", () => {
  const current = useTestStore("sqlite");
  let store: Store;
  beforeEach(() => {
    store = current();
  });

  async function fleetOf(count: number) {
    const deploy = await store.deploys.create(newDeploy({ env: "production" }), () => ({
      ignoredSafeties: [],
    }));
    const hosts = [];
    for (let i = 1; i <= count; i++) {
      hosts.push(
        await store.hosts.enrollAgent({
          name: `web-${i}`,
          labels: {},
          owner: "s1",
          tokenHash: null,
          grant: null,
        }),
      );
    }
    await store.fleet.addDeployHosts(deploy.id, hosts, "r2");
    for (const h of hosts)
      await store.hosts.saveInventory(h.id, [{ app: "shop", releases: ["r1"], current: "r1", slots: {} }]);
    return { deploy, hosts };
  }

  it("writes one turn's steps, inventories, last seen and targets in one transaction", async () => {
    const { deploy, hosts } = await fleetOf(3);
    const [a, b, c] = hosts as [(typeof hosts)[0], (typeof hosts)[0], (typeof hosts)[0]];
    const before = store.queries();
    await Promise.all([
      ...hosts.map((h) =>
        store.fleet.updateDeployHost(deploy.id, h.id, {
          step: "switched",
          switched: true,
          previousRelease: "r1",
        }),
      ),
      store.hosts.saveInventoryChanges(
        a.id,
        { changed: [{ app: "shop", releases: ["r1", "r2"], current: "r2", slots: {} }], removed: [] },
        { owner: "s1", at: "2026-12-07T12:00:00.000Z" },
      ),
      store.hosts.saveInventoryChanges(b.id, {
        changed: [{ app: "shop", releases: ["r1", "r2"], current: "r2", slots: {} }],
        removed: [],
      }),
      store.hosts.markSeen(c.id, "s1", "2026-12-07T12:00:01.000Z"),
      store.fleet.setTarget({
        hostId: a.id,
        app: "shop",
        env: "production",
        desiredRelease: "r2",
        actualRelease: "r2",
        previousRelease: "r1",
        deployId: deploy.id,
      }),
    ]);
    // BEGIN, 3 step updates, last seen + upsert, upsert, last seen, target, COMMIT: one commit, where
    // each store's own transaction and the lone writes were four.
    expect(store.queries() - before).toBe(10);
    expect((await store.fleet.deployHosts(deploy.id)).map((h) => [h.step, h.switched])).toEqual([
      ["switched", true],
      ["switched", true],
      ["switched", true],
    ]);
    expect((await store.hosts.get("web-1"))?.apps[0]?.current).toBe("r2");
    expect((await store.hosts.get("web-1"))?.lastSeenAt).toBe("2026-12-07T12:00:00.000Z");
    expect((await store.hosts.get("web-2"))?.apps[0]?.current).toBe("r2");
    expect((await store.hosts.get("web-3"))?.lastSeenAt).toBe("2026-12-07T12:00:01.000Z");
    expect((await store.fleet.targets("shop", "production")).map((t) => t.actualRelease)).toEqual(["r2"]);
  });

  it("makes a lone one-statement write without BEGIN and COMMIT", async () => {
    const { deploy, hosts } = await fleetOf(1);
    const before = store.queries();
    await store.fleet.updateDeployHost(deploy.id, hosts[0]!.id, { step: "staging" });
    expect(store.queries() - before).toBe(1);
    expect((await store.fleet.deployHosts(deploy.id))[0]?.step).toBe("staging");
  });

  it("fails only the write the database refuses, not the others of its turn", async () => {
    const { deploy, hosts } = await fleetOf(2);
    const results = await Promise.allSettled([
      store.fleet.updateDeployHost(deploy.id, hosts[0]!.id, { step: "staging" }),
      // No app: refused by the table, which fails the turn's transaction; each write is then made alone.
      store.hosts.saveInventoryChanges(hosts[1]!.id, {
        changed: [{ app: null as unknown as string, releases: [], current: null, slots: {} }],
        removed: [],
      }),
      store.hosts.markSeen(hosts[1]!.id, "s1", "2026-12-07T12:00:02.000Z"),
    ]);
    expect(results.map((r) => r.status)).toEqual(["fulfilled", "rejected", "fulfilled"]);
    expect((await store.fleet.deployHosts(deploy.id)).map((h) => h.step)).toEqual(["staging", "pending"]);
    expect((await store.hosts.get("web-2"))?.lastSeenAt).toBe("2026-12-07T12:00:02.000Z");
    expect((await store.hosts.get("web-2"))?.apps[0]?.current).toBe("r1");
  });
});
