import type { Kysely } from "kysely";
import type { HostHistoryEntry } from "../domain/dashboard.js";
import type { CommitSummary, DeployStatus, Trigger } from "../domain/deploy.js";
import type { HostStep } from "../domain/fleet.js";
import { fromJson } from "./rows.js";
import type { Schema } from "./schema.js";

export type { HostHistoryEntry } from "../domain/dashboard.js";

/** The name the engine's self-heal acts under (engine.selfHeal). */
export const SELF_HEAL_USER = "turnout (self-heal)";

/** What each host ran over time, from the per-host records of fleet deploys (deploy_hosts). */
export class HostHistoryStore {
  constructor(private readonly db: Kysely<Schema>) {}

  /** Newest first; `apps` limits it to those apps (null: every app). */
  async ofHost(
    hostName: string,
    apps: string[] | null,
    limit: number,
    app?: string,
  ): Promise<HostHistoryEntry[]> {
    if (apps !== null && apps.length === 0) return [];
    let query = this.db
      .selectFrom("deploy_hosts as h")
      .innerJoin("deploys as d", "d.id", "h.deploy_id")
      .select([
        "h.deploy_id",
        "h.release_id",
        "h.previous_release",
        "h.step",
        "h.switched",
        "h.switched_at",
        "h.error",
        "h.updated_at",
        "d.app",
        "d.env",
        "d.number",
        "d.status",
        "d.trigger",
        "d.rollback_of",
        "d.user_name",
        "d.sha",
        "d.commits",
        "d.started_at",
        "d.finished_at",
      ])
      .where("h.host_name", "=", hostName)
      .orderBy("h.deploy_id", "desc")
      .limit(limit);
    if (apps !== null) query = query.where("d.app", "in", apps);
    if (app !== undefined) query = query.where("d.app", "=", app);
    const rows = await query.execute();
    return rows.map((r) => {
      const commits = fromJson<Record<string, CommitSummary> | null>(r.commits);
      return {
        deployId: r.deploy_id,
        app: r.app,
        env: r.env,
        number: r.number,
        status: r.status as DeployStatus,
        trigger: r.trigger as Trigger,
        user: r.user_name,
        sha: r.sha,
        commit: commits ? (Object.values(commits).find((c) => c.sha === r.sha) ?? null) : null,
        releaseId: r.release_id,
        previousRelease: r.previous_release,
        step: r.step as HostStep,
        switched: r.switched === 1,
        switchedAt: r.switched_at ?? null,
        rollbackOf: r.rollback_of,
        selfHeal: r.trigger === "reconcile" && r.user_name === SELF_HEAL_USER,
        error: r.error,
        startedAt: r.started_at,
        finishedAt: r.finished_at,
        updatedAt: r.updated_at,
      };
    });
  }
}
