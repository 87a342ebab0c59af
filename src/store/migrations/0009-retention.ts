import type { Kysely } from "kysely";
import type { Capabilities } from "../capabilities.js";

/**
 * Retention: a deploy records the artifact it installs as soon as it has
 * one (built, reused or given), before staging starts, so the garbage
 * collector keeps it while the deploy runs; when a deploy's log was removed
 * by retention, so the API can say so instead of showing nothing; and when
 * an artifact was last stored (an upload of a tree already stored counts as
 * new for the grace period of unreferenced artifacts).
 */
export async function up(db: Kysely<unknown>, _caps: Capabilities): Promise<void> {
  await db.schema.alterTable("deploys").addColumn("installs_artifact", "text").execute();
  await db.schema.alterTable("deploys").addColumn("log_pruned_at", "text").execute();
  await db.schema.alterTable("artifacts").addColumn("stored_at", "text").execute();
}
