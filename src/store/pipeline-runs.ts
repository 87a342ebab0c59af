import type { Kysely, Selectable, Updateable } from "kysely";
import type { Components } from "../domain/deploy.js";
import { notFound } from "../domain/errors.js";
import {
  type GateStep,
  OPEN_RUN_STATUSES,
  type PipelineRun,
  type RunStatus,
} from "../domain/release-pipeline.js";
import { fromJson, nowIso, toJson } from "./rows.js";
import type { PipelineRunsTable, Schema } from "./schema.js";

export interface NewPipelineRun {
  app: string;
  env: string;
  fromEnv: string;
  sourceDeployId: number;
  sourceNumber: number;
  sha: string;
  components: Components;
  bakeUntil: string;
}

export type RunChange = Partial<{
  status: RunStatus;
  waitingOn: GateStep;
  checksPassed: boolean;
  approvalDeadline: string | null;
  decidedBy: string | null;
  decidedAt: string | null;
  message: string | null;
  deployId: number | null;
}>;

/**
 * The runs of release pipelines (domain/release-pipeline.ts). Every change
 * is conditional on the state it was decided from, so two server processes
 * driving the same pipeline never both move one run (the loser's update
 * changes nothing and it moves on).
 */
export class PipelineRunStore {
  constructor(private readonly db: Kysely<Schema>) {}

  /** Creates the run of a release into a stage, unless there is one already; returns whether it was made. */
  async open(input: NewPipelineRun): Promise<boolean> {
    const now = nowIso();
    const result = await this.db
      .insertInto("pipeline_runs")
      .values({
        app: input.app,
        env: input.env,
        from_env: input.fromEnv,
        source_deploy_id: input.sourceDeployId,
        source_number: input.sourceNumber,
        sha: input.sha,
        components: toJson(input.components),
        status: "waiting",
        waiting_on: null,
        bake_until: input.bakeUntil,
        checks_passed: 0,
        created_at: now,
        updated_at: now,
      })
      .onConflict((oc) => oc.columns(["app", "env", "source_deploy_id"]).doNothing())
      .executeTakeFirst();
    return Number(result.numInsertedOrUpdatedRows ?? 0) > 0;
  }

  async get(id: number): Promise<PipelineRun> {
    const row = await this.db.selectFrom("pipeline_runs").selectAll().where("id", "=", id).executeTakeFirst();
    if (!row) throw notFound(`pipeline run ${id}`, { id });
    return toRun(row);
  }

  async bySource(app: string, env: string, sourceDeployId: number): Promise<PipelineRun | undefined> {
    const row = await this.db
      .selectFrom("pipeline_runs")
      .selectAll()
      .where("app", "=", app)
      .where("env", "=", env)
      .where("source_deploy_id", "=", sourceDeployId)
      .executeTakeFirst();
    return row ? toRun(row) : undefined;
  }

  /** Runs not finished yet, oldest first (every process drives them). */
  async unfinished(app?: string): Promise<PipelineRun[]> {
    let query = this.db
      .selectFrom("pipeline_runs")
      .selectAll()
      .where("status", "in", [...OPEN_RUN_STATUSES])
      .orderBy("id", "asc");
    if (app !== undefined) query = query.where("app", "=", app);
    return (await query.execute()).map(toRun);
  }

  /** An app's runs, newest first. */
  async list(app: string, limit = 50): Promise<PipelineRun[]> {
    const rows = await this.db
      .selectFrom("pipeline_runs")
      .selectAll()
      .where("app", "=", app)
      .orderBy("id", "desc")
      .limit(limit)
      .execute();
    return rows.map(toRun);
  }

  /** Changes a run if it is still in one of `from`; returns whether it did. */
  async move(id: number, from: readonly RunStatus[], change: RunChange): Promise<boolean> {
    const set: Updateable<PipelineRunsTable> = { updated_at: nowIso() };
    if (change.status !== undefined) set.status = change.status;
    if (change.waitingOn !== undefined) set.waiting_on = change.waitingOn;
    if (change.checksPassed !== undefined) set.checks_passed = change.checksPassed ? 1 : 0;
    if (change.approvalDeadline !== undefined) set.approval_deadline = change.approvalDeadline;
    if (change.decidedBy !== undefined) set.decided_by = change.decidedBy;
    if (change.decidedAt !== undefined) set.decided_at = change.decidedAt;
    if (change.message !== undefined) set.message = change.message;
    if (change.deployId !== undefined) set.deploy_id = change.deployId;
    const result = await this.db
      .updateTable("pipeline_runs")
      .set(set)
      .where("id", "=", id)
      .where("status", "in", [...from])
      .executeTakeFirst();
    return Number(result.numUpdatedRows) > 0;
  }
}

function toRun(row: Selectable<PipelineRunsTable>): PipelineRun {
  return {
    id: row.id,
    app: row.app,
    env: row.env,
    fromEnv: row.from_env,
    sourceDeployId: row.source_deploy_id,
    sourceNumber: row.source_number,
    sha: row.sha,
    components: fromJson(row.components),
    status: row.status as RunStatus,
    waitingOn: (row.waiting_on as GateStep) ?? null,
    bakeUntil: row.bake_until,
    checksPassed: row.checks_passed === 1,
    approvalDeadline: row.approval_deadline,
    decidedBy: row.decided_by,
    decidedAt: row.decided_at,
    message: row.message,
    deployId: row.deploy_id,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}
