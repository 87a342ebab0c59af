import type { Kysely } from "kysely";
import type { Capabilities } from "../capabilities.js";

/**
 * Fleets: artifacts, hosts, what each host holds and should hold per app, and
 * each fleet deploy's per-host progress.
 */
export async function up(db: Kysely<unknown>, caps: Capabilities): Promise<void> {
  const withId = (name: string) => {
    const table = db.schema.createTable(name);
    return caps.autoIncrementPrimaryKey === "serial"
      ? table.addColumn("id", "serial", (c) => c.primaryKey())
      : table.addColumn("id", "integer", (c) => c.primaryKey().autoIncrement());
  };

  await db.schema
    .createTable("artifacts")
    .addColumn("digest", "text", (c) => c.primaryKey())
    .addColumn("app", "text", (c) => c.notNull())
    .addColumn("fingerprint", "text")
    .addColumn("files", "integer", (c) => c.notNull())
    .addColumn("bytes", "bigint", (c) => c.notNull())
    .addColumn("source", "text", (c) => c.notNull())
    .addColumn("created_at", "text", (c) => c.notNull())
    .execute();
  await db.schema
    .createIndex("artifacts_fingerprint")
    .on("artifacts")
    .columns(["app", "fingerprint"])
    .execute();

  await withId("hosts")
    .addColumn("name", "text", (c) => c.notNull().unique())
    .addColumn("kind", "text", (c) => c.notNull())
    .addColumn("labels", "text", (c) => c.notNull())
    .addColumn("address", "text")
    .addColumn("pool_state", "text", (c) => c.notNull())
    .addColumn("connected", "integer", (c) => c.notNull().defaultTo(0))
    /** Which server process holds the agent's connection (agents connect to one server). */
    .addColumn("connected_to", "text")
    .addColumn("last_seen_at", "text")
    /** sha256 of the host token issued at enrollment. */
    .addColumn("token_hash", "text")
    .addColumn("created_at", "text", (c) => c.notNull())
    .execute();

  // What a host reported holding, per app (actual state).
  await db.schema
    .createTable("host_apps")
    .addColumn("host_id", "integer", (c) => c.notNull())
    .addColumn("app", "text", (c) => c.notNull())
    .addColumn("current_release", "text")
    .addColumn("slots", "text", (c) => c.notNull())
    .addColumn("releases", "text", (c) => c.notNull())
    .addColumn("updated_at", "text", (c) => c.notNull())
    .addPrimaryKeyConstraint("host_apps_pk", ["host_id", "app"])
    .execute();

  // What the server wants each host to run, per app and environment, and what it last switched.
  await db.schema
    .createTable("host_targets")
    .addColumn("host_id", "integer", (c) => c.notNull())
    .addColumn("app", "text", (c) => c.notNull())
    .addColumn("env", "text", (c) => c.notNull())
    .addColumn("desired_release", "text")
    .addColumn("actual_release", "text")
    .addColumn("previous_release", "text")
    .addColumn("deploy_id", "integer")
    .addColumn("updated_at", "text", (c) => c.notNull())
    .addPrimaryKeyConstraint("host_targets_pk", ["host_id", "app", "env"])
    .execute();

  // Per-host progress of each fleet deploy.
  await db.schema
    .createTable("deploy_hosts")
    .addColumn("deploy_id", "integer", (c) => c.notNull())
    .addColumn("host_id", "integer", (c) => c.notNull())
    .addColumn("host_name", "text", (c) => c.notNull())
    .addColumn("step", "text", (c) => c.notNull())
    .addColumn("batch", "integer")
    .addColumn("release_id", "text", (c) => c.notNull())
    .addColumn("previous_release", "text")
    .addColumn("switched", "integer", (c) => c.notNull().defaultTo(0))
    .addColumn("bytes_fetched", "bigint", (c) => c.notNull().defaultTo(0))
    .addColumn("error", "text")
    .addColumn("updated_at", "text", (c) => c.notNull())
    .addPrimaryKeyConstraint("deploy_hosts_pk", ["deploy_id", "host_id"])
    .execute();

  // Releases of fleet deploys name their artifact; deploys may target a slot.
  await db.schema.alterTable("releases").addColumn("artifact", "text").execute();
  await db.schema.alterTable("deploys").addColumn("slot", "text").execute();
  await db.schema.alterTable("deploys").addColumn("artifact", "text").execute();
}
