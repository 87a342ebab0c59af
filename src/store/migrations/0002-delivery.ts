import type { Kysely } from "kysely";
import type { Capabilities } from "../capabilities.js";

/**
 * Git-driven delivery: webhook deliveries remembered (a redelivered hook is
 * acted on once), and on a rollback deploy the components it rolled back
 * from, so auto-deploy does not bring them straight back.
 */
export async function up(db: Kysely<unknown>, _caps: Capabilities): Promise<void> {
  await db.schema
    .createTable("webhook_deliveries")
    .addColumn("provider", "text", (c) => c.notNull())
    .addColumn("delivery_id", "text", (c) => c.notNull())
    .addColumn("app", "text")
    .addColumn("received_at", "text", (c) => c.notNull())
    .addPrimaryKeyConstraint("webhook_deliveries_pk", ["provider", "delivery_id"])
    .execute();
  await db.schema
    .createIndex("webhook_deliveries_received")
    .on("webhook_deliveries")
    .column("received_at")
    .execute();
  await db.schema.alterTable("deploys").addColumn("rolled_back_from", "text").execute();
}
