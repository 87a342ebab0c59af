import { describe, expect, it } from "vitest";
import { HostCallRouter } from "../../src/providers/fleet/host-call-router.js";
import type { HostCallStore } from "../../src/store/host-calls.js";
import { until } from "../helpers/wait.js";

/**
 * Which callers a holder takes for gone when it claims calls: a server it
 * has not heard from yet (it started since the holder's last heartbeat
 * read) has just made the call and is alive; one whose heartbeat went stale,
 * or whose process is gone, is not. (A deploy started right after its server
 * restarted had every routed call abandoned: multi-server-faults.)
 */
describe("a holder judging the callers of the calls it claims", () => {
  it("takes an unknown caller for alive, a stale or pid-dead one for gone", async () => {
    const now = Date.now();
    const verdicts: Record<string, boolean>[] = [];
    const store = {
      heartbeat: async () =>
        new Map([
          ["holder", now],
          ["known", now],
          ["stale", now - 60_000],
        ]),
      connectedAgents: async () => [],
      claim: async (_target: string, _margin: number, callerIsDead: (owner: string) => boolean) => {
        verdicts.push(
          Object.fromEntries(
            ["just-started", "known", "stale", "pid-gone", "holder"].map((o) => [o, callerIsDead(o)]),
          ),
        );
        return [];
      },
      leave: async () => undefined,
    } as unknown as HostCallStore;
    const router = new HostCallRouter({
      store,
      owner: "holder",
      local: () => undefined,
      ownerIsDead: (owner) => owner === "pid-gone",
      callTiming: { callTimeoutMs: 1000, callMarginMs: 100, cancelGraceMs: 100 },
      report: () => undefined,
    });
    await router.start();
    try {
      router.receive(JSON.stringify({ to: "holder", k: "call", id: "c1" }));
      await until(() => verdicts.length > 0, 5000);
      expect(verdicts[0]).toEqual({
        "just-started": false,
        known: false,
        stale: true,
        "pid-gone": true,
        holder: false,
      });
      // As a target (where to route a call), a server not heard from is still not one to use.
      expect(router.isDead("just-started")).toBe(true);
      expect(router.isDead("known")).toBe(false);
    } finally {
      await router.close();
    }
  });
});
