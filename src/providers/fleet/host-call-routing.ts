import { ownerIsDead } from "../../engine/owner.js";
import { PgListener } from "../../store/pg-listener.js";
import type { Store } from "../../store/store.js";
import type { AgentHub } from "./agent-hub.js";
import { HostCallRouter, type HostCallRouterTiming } from "./host-call-router.js";

/**
 * Starts routing host calls between the servers of one PostgreSQL: a router
 * bound to this server's agents, woken by a LISTEN connection of its own.
 * Returns the router; close() stops both (in-flight calls fail E_UNAVAILABLE).
 */
export async function startHostCallRouting(options: {
  store: Store;
  url: string;
  owner: string;
  agents: AgentHub;
  report: (message: string) => void;
  timing?: Partial<HostCallRouterTiming>;
}): Promise<{ router: HostCallRouter; close(): Promise<void> }> {
  const { store, owner, agents } = options;
  const router = new HostCallRouter({
    store: store.hostCalls,
    owner,
    local: (name) => agents.connection(name),
    ownerIsDead: (holder) => ownerIsDead(holder, owner, true),
    callTiming: agents.timing,
    diffs: agents.manifestDiffs,
    report: options.report,
    ...(options.timing ? { timing: options.timing } : {}),
  });
  await router.start();
  const listener = new PgListener({
    url: options.url,
    channel: async (client) =>
      (await client.query<{ c: string }>("select 'turnout_hc_' || substr(md5(current_schema()), 1, 20) as c"))
        .rows[0]!.c,
    onMessage: (payload) => router.receive(payload),
    onListening: () => router.listening(),
    report: options.report,
  });
  await listener.start();
  agents.routeThrough(router);
  return {
    router,
    close: async () => {
      await listener.close();
      await router.close();
    },
  };
}
