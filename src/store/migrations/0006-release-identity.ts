import type { Kysely } from "kysely";
import type { Capabilities } from "../capabilities.js";

/**
 * What a release depends on, per app, and what a build depends on:
 * - deploys and releases record the per-app revision they ran with (null:
 *   recorded before it existed);
 * - an environment records the settings decided for it (the per-app revision
 *   a server saw when the configuration changed or it started), which
 *   auto-deploy reconciles the environment to;
 * - artifact_builds maps a build's inputs (its key) to the artifact they
 *   produced, several keys to one artifact when builds agree.
 */
export async function up(db: Kysely<unknown>, _caps: Capabilities): Promise<void> {
  await db.schema.alterTable("deploys").addColumn("app_revision", "text").execute();
  await db.schema.alterTable("releases").addColumn("app_revision", "text").execute();
  await db.schema.alterTable("environments").addColumn("desired_app_revision", "text").execute();
  await db.schema.alterTable("environments").addColumn("desired_at", "text").execute();
  await db.schema
    .createTable("artifact_builds")
    .addColumn("app", "text", (c) => c.notNull())
    .addColumn("build_key", "text", (c) => c.notNull())
    .addColumn("digest", "text", (c) => c.notNull())
    .addColumn("created_at", "text", (c) => c.notNull())
    .addPrimaryKeyConstraint("artifact_builds_pk", ["app", "build_key"])
    .execute();
}
