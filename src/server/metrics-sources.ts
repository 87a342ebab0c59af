import type { MetricsSource } from "../observability/metrics.js";
import type { Store } from "../store/store.js";

/**
 * The gauges read at scrape time: the queue and locks (from the store, so
 * every server of a shared database says the same), hosts by state, and
 * this server's own agent connections and running deploys.
 */
export function serverMetricSources(deps: {
  store: Store;
  engine: { runningDeploys(): unknown[] };
  connectedAgents: () => number;
}): MetricsSource[] {
  const { store } = deps;
  const deliveries = async (status: string) =>
    (await store.notify.countsByChannel())
      .filter((c) => c.status === status)
      .map((c) => ({ labels: { channel: c.channel }, value: c.n }));
  return [
    {
      name: "turnout_outbox_backlog",
      help: 'Notification deliveries not yet delivered (events not yet fanned out under channel "-"), by channel',
      labelNames: ["channel"],
      collect: async () => [
        ...(await deliveries("pending")),
        { labels: { channel: "-" }, value: await store.notify.pendingEvents() },
      ],
    },
    {
      name: "turnout_outbox_failed_deliveries_total",
      help: "Notification deliveries given up on (kept until pruned), by channel",
      labelNames: ["channel"],
      collect: () => deliveries("failed"),
    },
    {
      name: "turnout_queue_depth",
      help: "Deploys queued (not yet running), by app and environment",
      labelNames: ["app", "env"],
      collect: async () =>
        (await store.metrics.queues()).map((q) => ({ labels: { app: q.app, env: q.env }, value: q.depth })),
    },
    {
      name: "turnout_queue_oldest_wait_seconds",
      help: "How long the longest-waiting queued deploy has waited, by app and environment",
      labelNames: ["app", "env"],
      collect: async () => {
        const now = Date.now();
        return (await store.metrics.queues()).map((q) => ({
          labels: { app: q.app, env: q.env },
          value: Math.max(0, (now - Date.parse(q.oldestAt)) / 1000),
        }));
      },
    },
    {
      name: "turnout_environment_locked",
      help: "1 for each locked environment, by app and environment",
      labelNames: ["app", "env"],
      collect: async () =>
        (await store.locks.list()).map((l) => ({ labels: { app: l.app, env: l.env }, value: 1 })),
    },
    {
      name: "turnout_locks",
      help: "Locked environments",
      collect: async () => [{ value: (await store.locks.list()).length }],
    },
    {
      name: "turnout_hosts",
      help: "Fleet hosts by kind (agent, ssh), connection state (connected, disconnected) and pool state",
      labelNames: ["kind", "state", "pool"],
      collect: async () =>
        (await store.metrics.hostStates()).map((h) => ({
          labels: { kind: h.kind, state: h.connected ? "connected" : "disconnected", pool: h.poolState },
          value: h.count,
        })),
    },
    {
      name: "turnout_agents_connected",
      help: "Agents connected to this server process",
      collect: () => [{ value: deps.connectedAgents() }],
    },
    {
      name: "turnout_deploys_running",
      help: "Deploys this server process is running",
      collect: () => [{ value: deps.engine.runningDeploys().length }],
    },
    {
      // The collectors above query the store too: a scrape adds its own few statements.
      name: "turnout_database_queries_total",
      help: "Statements (BEGIN and COMMIT included) this server process has sent to the database since it started",
      collect: () => [{ value: store.queries() }],
    },
    {
      name: "turnout_database_statements_total",
      help: 'The statements of turnout_database_queries_total by kind: verb and first table (e.g. "update deploy_hosts")',
      labelNames: ["kind"],
      collect: () => [...store.queriesByKind()].map(([kind, value]) => ({ labels: { kind }, value })),
    },
  ];
}
