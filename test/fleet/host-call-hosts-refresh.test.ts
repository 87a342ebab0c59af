import { describe, expect, it } from "vitest";
import { HostCallRouter } from "../../src/providers/fleet/host-call-router.js";
import type { HostCallStore } from "../../src/store/host-calls.js";
import { until } from "../helpers/wait.js";

/**
 * Who holds which host: re-read at once when a server announces that agents
 * came or went (and when the listener reconnects), otherwise only as a
 * safety net every hostsRefreshMs, not at every sweep: the read returns every
 * connected agent, and every server made it once a second.
 */
describe("a router's map of who holds which host", () => {
  it("is re-read on an announcement at once, and between them only at the safety-net cadence", async () => {
    let reads = 0;
    let holder = "server-b";
    const store = {
      heartbeat: async () => new Map([["server-b", Date.now()]]),
      connectedAgents: async () => {
        reads++;
        return [{ name: "web-1", owner: holder }];
      },
      claim: async () => [],
      prune: async () => 0,
      settled: async () => [],
      leave: async () => undefined,
    } as unknown as HostCallStore;
    const router = new HostCallRouter({
      store,
      owner: "server-a",
      local: () => undefined,
      ownerIsDead: () => false,
      timing: { sweepMs: 20, hostsRefreshMs: 400 },
      callTiming: { callTimeoutMs: 1000, callMarginMs: 100, cancelGraceMs: 100 },
      report: () => undefined,
    });
    await router.start();
    try {
      expect(router.holderOf("web-1")).toBe("server-b");
      const afterStart = reads;
      // Twenty-five sweeps: one safety-net read, perhaps two, never one per sweep.
      const sweepsStarted = Date.now();
      await until(() => Date.now() - sweepsStarted >= 500, 5000);
      expect(reads - afterStart).toBeGreaterThanOrEqual(1);
      expect(reads - afterStart).toBeLessThanOrEqual(2);

      // The agent moved to another server, which announced it: read again at once.
      holder = "server-c";
      const before = reads;
      router.receive(JSON.stringify({ to: "*", k: "hosts" }));
      await until(() => reads > before, 2000);
      await until(() => router.holderOf("web-1") !== "server-b", 2000);
      // server-c has no heartbeat yet: not a server to route to, and not the old one either.
      expect(router.holderOf("web-1")).toBeUndefined();
    } finally {
      await router.close();
    }
  });
});
