import { describe, expect, it } from "vitest";
import type { AppConfig, EnvironmentConfig } from "../../src/domain/app-config.js";
import type { NewNotificationEvent } from "../../src/domain/notification-event.js";
import { DriftWatch } from "../../src/engine/drift-watch.js";
import type { FleetHostState } from "../../src/engine/fleet-ops.js";
import { BACKENDS, useTestStore } from "../helpers/databases.js";
import { newDeploy } from "../store/fixtures.js";

/** The fleet's own events (issue 12, point 1): a host depooled, drift detected, drift healed. */
for (const backend of BACKENDS) {
  describe(`fleet notification events (${backend})`, () => {
    const store = useTestStore(backend);

    it("a host newly depooled is told once, in the transaction that depools it", async () => {
      const s = store();
      const host = await s.hosts.enrollAgent({
        name: "web-1",
        labels: { role: "web" },
        owner: "s1",
        tokenHash: null,
        grant: { apps: ["shop"], labels: ["role=web"] },
      });
      const notice = { env: "production", hostName: "web-1" };
      await s.fleet.setPoolState(host.id, "shop", "depooled", notice);
      // Already out of the pool: not a new event.
      await s.fleet.setPoolState(host.id, "shop", "depooled", notice);
      await s.fleet.setPoolState(host.id, "shop", "pooled", notice);
      await s.fleet.setPoolState(host.id, "shop", "depooled", notice);
      const seen: string[] = [];
      await s.notify.fanOut(100, (event) => {
        seen.push(`${event.kind}:${event.app}/${event.env}:${event.hosts?.join(",")}`);
        return [];
      });
      expect(seen).toEqual(["host.depooled:shop/production:web-1", "host.depooled:shop/production:web-1"]);
    });

    it("a reconcile that succeeds tells that the drift is healed; other deploys do not", async () => {
      const s = store();
      for (const trigger of ["api", "reconcile"] as const) {
        const deploy = await s.deploys.create(newDeploy({ env: "production", trigger }), () => ({
          ignoredSafeties: [],
        }));
        const claimed = await s.deploys.claimNext("w1", 30_000);
        expect(claimed?.id).toBe(deploy.id);
        await s.deploys.finish(deploy.id, "w1", { status: "succeeded" });
      }
      const seen: string[] = [];
      await s.notify.fanOut(100, (event) => {
        seen.push(`${event.kind}:${event.deploy?.trigger ?? "-"}`);
        return [];
      });
      expect(seen).toEqual([
        "deploy.queued:api",
        "deploy.started:api",
        "deploy.succeeded:api",
        "deploy.queued:reconcile",
        "deploy.started:reconcile",
        "deploy.succeeded:reconcile",
        "drift.healed:reconcile",
      ]);
    });
  });
}

describe("the drift watch", () => {
  const target = {
    app: { name: "shop" } as AppConfig,
    environment: { name: "production", deploy: { provider: "fleet" } } as unknown as EnvironmentConfig,
  };
  const host = (name: string, drifted: boolean, connected = true): FleetHostState => ({
    name,
    kind: "agent",
    connected,
    poolState: "pooled",
    lastSeenAt: null,
    current: drifted ? "r-old" : "r-new",
    desired: "r-new",
    drifted,
    path: null,
  });

  it("announces each host once when it drifts, not while a deploy moves the hosts or just after, and again after it came back", async () => {
    let hosts: FleetHostState[] = [host("web-1", false), host("web-2", false)];
    let motion: "deploying" | "settling" | null = null;
    const events: NewNotificationEvent[] = [];
    const watch = new DriftWatch({
      hosts: async () => hosts,
      motion: async () => motion,
      record: async (event) => {
        events.push(event);
      },
      now: () => new Date("2026-12-07T10:00:00Z"),
    });
    const told = () => events.map((e) => `${e.kind}:${e.hosts?.join(",")}`);

    await watch.check([target]);
    expect(told()).toEqual([]);
    // A deploy switches web-1 first: it looks drifted, but the deploy is moving it.
    hosts = [host("web-1", true), host("web-2", false)];
    motion = "deploying";
    expect(await watch.check([target])).toBe(false);
    expect(told()).toEqual([]);
    // The deploy just ended and web-1's report may not be stored yet: not believed, looked at again.
    motion = "settling";
    expect(await watch.check([target])).toBe(true);
    expect(told()).toEqual([]);
    // No deploy: web-1 and a disconnected web-2 differ; only the connected one is drift.
    motion = null;
    hosts = [host("web-1", true), host("web-2", true, false)];
    expect(await watch.check([target])).toBe(false);
    await watch.check([target]);
    expect(told()).toEqual(["drift.detected:web-1"]);
    expect(events[0]).toMatchObject({ app: "shop", env: "production", at: "2026-12-07T10:00:00.000Z" });
    // web-1 healed, then drifts again: a new drift, told again.
    hosts = [host("web-1", false)];
    await watch.check([target]);
    hosts = [host("web-1", true)];
    await watch.check([target]);
    expect(told()).toEqual(["drift.detected:web-1", "drift.detected:web-1"]);
  });
});
