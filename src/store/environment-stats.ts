import type { Kysely } from "kysely";
import { FINISHED_STATUSES } from "../domain/deploy.js";
import {
  type EnvironmentStats,
  environmentStats,
  type FinishedDeployRow,
  median,
} from "../domain/deploy-stats.js";
import type { Schema } from "./schema.js";

const DAY_MS = 86_400_000;

/** The figures behind an environment's charts, from its deploys (see domain/deploy-stats.ts). */
export class StatsStore {
  constructor(private readonly db: Kysely<Schema>) {}

  async environment(
    app: string,
    env: string,
    days: number,
    now: Date = new Date(),
  ): Promise<EnvironmentStats> {
    // A day's margin: a deploy requested just before the first day may finish on it.
    const since = new Date(now.getTime() - (days + 1) * DAY_MS).toISOString();
    const rows = await this.db
      .selectFrom("deploys")
      .select(["status", "started_at", "finished_at"])
      .where("app", "=", app)
      .where("env", "=", env)
      .where("created_at", ">=", since)
      .where("status", "in", [...FINISHED_STATUSES])
      .execute();
    const finished: FinishedDeployRow[] = rows
      .filter((r) => r.finished_at !== null)
      .map((r) => ({
        status: r.status as FinishedDeployRow["status"],
        startedAt: r.started_at,
        finishedAt: r.finished_at!,
      }));
    return environmentStats(finished, { days, now });
  }

  /**
   * The typical run time of an environment's deploys: the median of its last
   * ten succeeded ones (null: none yet). Asked only for environments with a
   * deploy running, to show its progress.
   */
  async typicalDuration(app: string, env: string): Promise<number | null> {
    const rows = await this.db
      .selectFrom("deploys")
      .select(["started_at", "finished_at"])
      .where("app", "=", app)
      .where("env", "=", env)
      .where("status", "=", "succeeded")
      .orderBy("id", "desc")
      .limit(10)
      .execute();
    return median(
      rows
        .filter((r) => r.started_at !== null && r.finished_at !== null)
        .map((r) => Date.parse(r.finished_at!) - Date.parse(r.started_at!)),
    );
  }

  /** Each environment's newest finished deploy (two queries, whatever the number of environments). */
  async lastFinished(apps: string[]): Promise<Map<string, LastFinished>> {
    const out = new Map<string, LastFinished>();
    if (apps.length === 0) return out;
    const newest = await this.db
      .selectFrom("deploys")
      .select(({ fn }) => fn.max("id").as("id"))
      .where("app", "in", apps)
      .where("status", "in", [...FINISHED_STATUSES])
      .groupBy(["app", "env"])
      .execute();
    const ids = newest.map((r) => Number(r.id)).filter((id) => Number.isFinite(id));
    if (ids.length === 0) return out;
    const rows = await this.db
      .selectFrom("deploys")
      .select(["id", "app", "env", "number", "status", "finished_at", "error_message"])
      .where("id", "in", ids)
      .execute();
    for (const r of rows) {
      out.set(`${r.app}/${r.env}`, {
        id: r.id,
        number: r.number,
        status: r.status as LastFinished["status"],
        finishedAt: r.finished_at,
        errorMessage: r.error_message,
      });
    }
    return out;
  }
}

export interface LastFinished {
  id: number;
  number: number;
  status: "succeeded" | "failed" | "cancelled";
  finishedAt: string | null;
  errorMessage: string | null;
}
