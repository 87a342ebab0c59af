import type { Kysely } from "kysely";
import type { Capabilities } from "../capabilities.js";

/**
 * What the web dashboard shows that was not recorded before:
 * - each deploy's commits described (subject, author, date), written when
 *   the deploy is admitted, so lists stay cheap and survive a lost mirror;
 * - each deploy's phase transitions with their times (the timeline);
 * - per environment, how many commits its branch has that it does not run
 *   (written by the poller after each look);
 * - one-time sign-in codes for the browser, and token expiry (the short-lived
 *   tokens those codes are exchanged for).
 */
export async function up(db: Kysely<unknown>, caps: Capabilities): Promise<void> {
  await db.schema.alterTable("deploys").addColumn("commits", "text").execute();

  const phases = db.schema.createTable("deploy_phases");
  await (caps.autoIncrementPrimaryKey === "serial"
    ? phases.addColumn("id", "serial", (c) => c.primaryKey())
    : phases.addColumn("id", "integer", (c) => c.primaryKey().autoIncrement())
  )
    .addColumn("deploy_id", "integer", (c) => c.notNull())
    .addColumn("phase", "text", (c) => c.notNull())
    .addColumn("status", "text", (c) => c.notNull())
    .addColumn("at", "text", (c) => c.notNull())
    .execute();
  await db.schema
    .createIndex("deploy_phases_deploy")
    .on("deploy_phases")
    .columns(["deploy_id", "id"])
    .execute();

  await db.schema
    .createTable("environment_undeployed")
    .addColumn("app", "text", (c) => c.notNull())
    .addColumn("env", "text", (c) => c.notNull())
    /** The environment's release the count was made against (null: never deployed): stale once it changes. */
    .addColumn("base_release_id", "integer")
    /** The newest commit not deployed (null: none). */
    .addColumn("newest_sha", "text")
    .addColumn("count", "integer", (c) => c.notNull())
    /** The count stopped at its cap: "at least". */
    .addColumn("truncated", "integer", (c) => c.notNull().defaultTo(0))
    .addColumn("checked_at", "text", (c) => c.notNull())
    .addPrimaryKeyConstraint("environment_undeployed_pk", ["app", "env"])
    .execute();

  await db.schema
    .createTable("login_codes")
    .addColumn("code_hash", "text", (c) => c.primaryKey())
    .addColumn("token_id", "integer", (c) => c.notNull())
    .addColumn("created_by", "text", (c) => c.notNull())
    .addColumn("role", "text", (c) => c.notNull())
    .addColumn("apps", "text")
    .addColumn("created_at", "text", (c) => c.notNull())
    .addColumn("expires_at", "text", (c) => c.notNull())
    .execute();

  await db.schema.alterTable("tokens").addColumn("expires_at", "text").execute();
  // A host's history: its records across deploys, newest first.
  await db.schema
    .createIndex("deploy_hosts_host")
    .on("deploy_hosts")
    .columns(["host_name", "deploy_id"])
    .execute();
  // Stats read an environment's deploys of the last days.
  await db.schema
    .createIndex("deploys_env_created")
    .on("deploys")
    .columns(["app", "env", "created_at"])
    .execute();
}
