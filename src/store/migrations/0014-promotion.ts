import { type CreateTableBuilder, type Kysely, sql } from "kysely";
import type { Capabilities } from "../capabilities.js";

/**
 * Promotion and release pipelines:
 * - a deploy records where its release was promoted from (environment and
 *   deploy) and the reason its requester gave (a direct deploy into an
 *   environment that requires promotion needs one);
 * - pipeline_runs: one move of a release from one stage of an app's
 *   pipeline to the next, with its gate's state, so that a restarted server
 *   goes on where it was. At most one run per (app, stage, source deploy).
 */
export async function up(db: Kysely<unknown>, caps: Capabilities): Promise<void> {
  await db.schema.alterTable("deploys").addColumn("promoted_from_env", "text").execute();
  await db.schema.alterTable("deploys").addColumn("promoted_from_deploy", "integer").execute();
  await db.schema.alterTable("deploys").addColumn("promoted_from_number", "integer").execute();
  await db.schema.alterTable("deploys").addColumn("reason", "text").execute();

  const table: CreateTableBuilder<string, "id"> =
    caps.autoIncrementPrimaryKey === "serial"
      ? db.schema.createTable("pipeline_runs").addColumn("id", "serial", (c) => c.primaryKey())
      : db.schema
          .createTable("pipeline_runs")
          .addColumn("id", "integer", (c) => c.primaryKey().autoIncrement());
  await table
    .addColumn("app", "text", (c) => c.notNull())
    .addColumn("env", "text", (c) => c.notNull())
    .addColumn("from_env", "text", (c) => c.notNull())
    .addColumn("source_deploy_id", "integer", (c) => c.notNull())
    .addColumn("source_number", "integer", (c) => c.notNull())
    .addColumn("sha", "text", (c) => c.notNull())
    .addColumn("components", "text", (c) => c.notNull())
    .addColumn("status", "text", (c) => c.notNull())
    .addColumn("waiting_on", "text")
    .addColumn("bake_until", "text", (c) => c.notNull())
    .addColumn("checks_passed", "integer", (c) => c.notNull().defaultTo(0))
    .addColumn("approval_deadline", "text")
    .addColumn("decided_by", "text")
    .addColumn("decided_at", "text")
    .addColumn("message", "text")
    .addColumn("deploy_id", "integer")
    .addColumn("created_at", "text", (c) => c.notNull())
    .addColumn("updated_at", "text", (c) => c.notNull())
    .addCheckConstraint(
      "pipeline_runs_status_check",
      sql`status in ('waiting', 'approved', 'promoting', 'done', 'rejected', 'timed_out', 'failed', 'superseded')`,
    )
    .execute();
  await db.schema
    .createIndex("pipeline_runs_one_per_source")
    .unique()
    .on("pipeline_runs")
    .columns(["app", "env", "source_deploy_id"])
    .execute();
}
