import { type CreateTableBuilder, type Kysely, sql } from "kysely";
import type { Capabilities } from "../capabilities.js";

/** The first schema: deploys and their queue, environments, releases, locks, logs, tokens, audit. */
export async function up(db: Kysely<unknown>, caps: Capabilities): Promise<void> {
  const createTable = (name: string): CreateTableBuilder<string, "id"> => {
    const table = db.schema.createTable(name);
    return caps.autoIncrementPrimaryKey === "serial"
      ? table.addColumn("id", "serial", (c) => c.primaryKey())
      : table.addColumn("id", "integer", (c) => c.primaryKey().autoIncrement());
  };

  await createTable("deploys")
    .addColumn("app", "text", (c) => c.notNull())
    .addColumn("env", "text", (c) => c.notNull())
    .addColumn("number", "integer", (c) => c.notNull())
    .addColumn("status", "text", (c) => c.notNull())
    .addColumn("phase", "text")
    .addColumn("trigger", "text", (c) => c.notNull())
    .addColumn("user_name", "text", (c) => c.notNull())
    .addColumn("ref", "text", (c) => c.notNull())
    .addColumn("sha", "text", (c) => c.notNull())
    .addColumn("components", "text", (c) => c.notNull())
    .addColumn("previous_sha", "text")
    .addColumn("params", "text", (c) => c.notNull())
    .addColumn("force", "integer", (c) => c.notNull().defaultTo(0))
    .addColumn("ignored_safeties", "text", (c) => c.notNull())
    .addColumn("rollback_of", "integer")
    .addColumn("error_code", "text")
    .addColumn("error_message", "text")
    .addColumn("release_id", "integer")
    .addColumn("config_revision", "text", (c) => c.notNull())
    .addColumn("environment_config", "text")
    .addColumn("created_at", "text", (c) => c.notNull())
    .addColumn("started_at", "text")
    .addColumn("finished_at", "text")
    .addColumn("cancel_requested", "integer", (c) => c.notNull().defaultTo(0))
    .addColumn("lease_owner", "text")
    .addColumn("lease_expires_at", "text")
    .addColumn("pid", "integer")
    .addCheckConstraint(
      "deploys_status_check",
      sql`status in ('queued', 'waiting', 'running', 'succeeded', 'failed', 'cancelled')`,
    )
    .execute();
  // Deploy numbers are unique per environment …
  await db.schema
    .createIndex("deploys_env_number")
    .unique()
    .on("deploys")
    .columns(["app", "env", "number"])
    .execute();
  // … and at most one deploy per environment is active, whatever the code does.
  await db.schema
    .createIndex("deploys_one_active_per_env")
    .unique()
    .on("deploys")
    .columns(["app", "env"])
    .where(sql.ref("status"), "in", sql`('waiting', 'running')`)
    .execute();
  await db.schema.createIndex("deploys_status_id").on("deploys").columns(["status", "id"]).execute();

  await db.schema
    .createTable("environments")
    .addColumn("app", "text", (c) => c.notNull())
    .addColumn("env", "text", (c) => c.notNull())
    .addColumn("deploy_seq", "integer", (c) => c.notNull().defaultTo(0))
    .addColumn("current_release_id", "integer")
    .addColumn("current_deploy_id", "integer")
    .addColumn("updated_at", "text", (c) => c.notNull())
    .addPrimaryKeyConstraint("environments_pk", ["app", "env"])
    .execute();

  await createTable("releases")
    .addColumn("app", "text", (c) => c.notNull())
    .addColumn("env", "text", (c) => c.notNull())
    .addColumn("deploy_id", "integer", (c) => c.notNull())
    .addColumn("deploy_number", "integer", (c) => c.notNull())
    .addColumn("fingerprint", "text", (c) => c.notNull())
    .addColumn("components", "text", (c) => c.notNull())
    .addColumn("config_revision", "text", (c) => c.notNull())
    .addColumn("environment_config", "text", (c) => c.notNull())
    .addColumn("created_at", "text", (c) => c.notNull())
    .execute();
  await db.schema.createIndex("releases_env").on("releases").columns(["app", "env", "id"]).execute();
  await db.schema.createIndex("releases_deploy").unique().on("releases").column("deploy_id").execute();

  await db.schema
    .createTable("locks")
    .addColumn("app", "text", (c) => c.notNull())
    .addColumn("env", "text", (c) => c.notNull())
    .addColumn("locked_by", "text", (c) => c.notNull())
    .addColumn("reason", "text", (c) => c.notNull())
    .addColumn("created_at", "text", (c) => c.notNull())
    .addPrimaryKeyConstraint("locks_pk", ["app", "env"])
    .execute();

  await db.schema
    .createTable("log_chunks")
    .addColumn("deploy_id", "integer", (c) => c.notNull())
    .addColumn("seq", "integer", (c) => c.notNull())
    .addColumn("offset", "integer", (c) => c.notNull())
    .addColumn("length", "integer", (c) => c.notNull())
    .addColumn("text", "text", (c) => c.notNull())
    .addColumn("created_at", "text", (c) => c.notNull())
    .addPrimaryKeyConstraint("log_chunks_pk", ["deploy_id", "seq"])
    .execute();

  await createTable("tokens")
    .addColumn("name", "text", (c) => c.notNull().unique())
    .addColumn("hash", "text", (c) => c.notNull().unique())
    .addColumn("role", "text", (c) => c.notNull())
    .addColumn("apps", "text")
    .addColumn("created_at", "text", (c) => c.notNull())
    .addColumn("created_by", "text", (c) => c.notNull())
    .addColumn("last_used_at", "text")
    .addColumn("revoked_at", "text")
    .execute();

  await createTable("audit_events")
    .addColumn("at", "text", (c) => c.notNull())
    .addColumn("actor", "text", (c) => c.notNull())
    .addColumn("action", "text", (c) => c.notNull())
    .addColumn("app", "text")
    .addColumn("env", "text")
    .addColumn("details", "text", (c) => c.notNull())
    .execute();
  await db.schema.createIndex("audit_events_env").on("audit_events").columns(["app", "env", "id"]).execute();
}
