import { describe, expect, it } from "vitest";
import type { AgentConnection } from "../../src/providers/fleet/agent-connection.js";
import { HostCallRouter } from "../../src/providers/fleet/host-call-router.js";
import type { HostCallRow, HostCallStore } from "../../src/store/host-calls.js";
import { until } from "../helpers/wait.js";

/**
 * The holder's side of routed calls: the calls of a fleet batch end a few
 * milliseconds apart, each in a turn of its own; their outcomes are one
 * statement (finishMany), not one apiece.
 */
describe("a holder recording the outcomes of routed calls", () => {
  it("records calls that end a moment apart in one statement", async () => {
    const hosts = ["web-1", "web-2", "web-3", "web-4"];
    const calls: HostCallRow[] = hosts.map((host, i) => ({
      id: `call-${i}`,
      deploy_id: 1,
      host,
      caller: "server-a",
      target: "server-b",
      op: "prune",
      args: JSON.stringify({ app: "shop", keep: 5 }),
      timeout_ms: 10_000,
      status: "running",
      created_at: new Date().toISOString(),
      started_at: new Date().toISOString(),
      finished_at: null,
      result: null,
      error_code: null,
      error_message: null,
      cancel_requested: 0,
    }));
    const finishGroups: string[][] = [];
    let claimed = false;
    const store = {
      heartbeat: async () => new Map([["server-a", Date.now()]]),
      connectedAgents: async () => [],
      claim: async () => {
        if (claimed) return [];
        claimed = true;
        return calls;
      },
      finishMany: async (batch: { callId: string }[]) => {
        finishGroups.push(batch.map((b) => b.callId));
      },
      appendLinesMany: async () => undefined,
      invalidRunning: async () => [],
      prune: async () => 0,
      settled: async () => [],
      leave: async () => undefined,
    } as unknown as HostCallStore;
    // Each host answers a turn of the event loop after the one before it.
    const connection = (turns: number) =>
      ({
        closed: false,
        call: async () => {
          for (let t = 0; t < turns; t++) await new Promise((resolve) => setImmediate(resolve));
          return { removed: [] };
        },
      }) as unknown as AgentConnection;
    const router = new HostCallRouter({
      store,
      owner: "server-b",
      local: (name) => connection(hosts.indexOf(name) * 2),
      ownerIsDead: () => false,
      timing: { sweepMs: 60_000 },
      callTiming: { callTimeoutMs: 10_000, callMarginMs: 100, cancelGraceMs: 100 },
      report: (message) => {
        throw new Error(message);
      },
    });
    await router.start();
    try {
      router.receive(JSON.stringify({ to: "server-b", k: "call", id: "call-0" }));
      await until(() => finishGroups.flat().length === hosts.length, 5000);
      expect(finishGroups).toEqual([["call-0", "call-1", "call-2", "call-3"]]);
    } finally {
      await router.close();
    }
  });
});
