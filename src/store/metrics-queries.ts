import type { Kysely } from "kysely";
import type { Schema } from "./schema.js";

export interface QueueStat {
  app: string;
  env: string;
  depth: number;
  /** When the longest-waiting queued deploy was requested. */
  oldestAt: string;
}

export interface HostStateCount {
  kind: string;
  connected: boolean;
  poolState: string;
  count: number;
}

/** What the metrics read at scrape time: small aggregates, one query each. */
export class MetricsQueries {
  constructor(private readonly db: Kysely<Schema>) {}

  async queues(): Promise<QueueStat[]> {
    const rows = await this.db
      .selectFrom("deploys")
      .select((eb) => [
        "app",
        "env",
        eb.fn.countAll<number | string>().as("depth"),
        eb.fn.min("created_at").as("oldest"),
      ])
      .where("status", "=", "queued")
      .groupBy(["app", "env"])
      .execute();
    return rows.map((r) => ({ app: r.app, env: r.env, depth: Number(r.depth), oldestAt: String(r.oldest) }));
  }

  async hostStates(): Promise<HostStateCount[]> {
    const rows = await this.db
      .selectFrom("hosts")
      .select((eb) => ["kind", "connected", "pool_state", eb.fn.countAll<number | string>().as("count")])
      .groupBy(["kind", "connected", "pool_state"])
      .execute();
    return rows.map((r) => ({
      kind: r.kind,
      connected: Number(r.connected) === 1,
      poolState: r.pool_state,
      count: Number(r.count),
    }));
  }
}
