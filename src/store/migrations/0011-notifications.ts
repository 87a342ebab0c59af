import type { Kysely } from "kysely";
import type { Capabilities } from "../capabilities.js";

/**
 * Notifications (src/notify/): events written in the transaction of the
 * state change they describe, the outbox of deliveries (one per event and
 * subscribed channel) with their attempts and outcome, and what channels
 * remember per subject (the Slack message a deploy's events update).
 */
export async function up(db: Kysely<unknown>, caps: Capabilities): Promise<void> {
  const id = (table: string) => {
    const t = db.schema.createTable(table);
    return caps.autoIncrementPrimaryKey === "serial"
      ? t.addColumn("id", "serial", (c) => c.primaryKey())
      : t.addColumn("id", "integer", (c) => c.primaryKey().autoIncrement());
  };
  await id("notify_events")
    .addColumn("kind", "text", (c) => c.notNull())
    .addColumn("app", "text", (c) => c.notNull())
    .addColumn("env", "text", (c) => c.notNull())
    .addColumn("payload", "text", (c) => c.notNull())
    .addColumn("created_at", "text", (c) => c.notNull())
    .execute();

  await id("notify_deliveries")
    .addColumn("event_id", "integer", (c) => c.notNull())
    .addColumn("channel", "text", (c) => c.notNull())
    .addColumn("kind", "text", (c) => c.notNull())
    .addColumn("app", "text", (c) => c.notNull())
    .addColumn("env", "text", (c) => c.notNull())
    .addColumn("deploy_id", "integer")
    .addColumn("subject", "text", (c) => c.notNull())
    .addColumn("payload", "text", (c) => c.notNull())
    .addColumn("status", "text", (c) => c.notNull())
    .addColumn("attempts", "integer", (c) => c.notNull().defaultTo(0))
    .addColumn("next_attempt_at", "text", (c) => c.notNull())
    .addColumn("lease_owner", "text")
    .addColumn("lease_until", "text")
    .addColumn("last_error", "text")
    .addColumn("created_at", "text", (c) => c.notNull())
    .addColumn("updated_at", "text", (c) => c.notNull())
    .addColumn("delivered_at", "text")
    .execute();
  // The dispatcher's claim: due pending rows, each the first pending one of its subject on its channel.
  await db.schema
    .createIndex("notify_deliveries_pending")
    .on("notify_deliveries")
    .columns(["status", "next_attempt_at", "id"])
    .execute();
  await db.schema
    .createIndex("notify_deliveries_subject")
    .on("notify_deliveries")
    .columns(["channel", "subject", "status", "id"])
    .execute();
  // The API lists an app's deliveries newest first.
  await db.schema
    .createIndex("notify_deliveries_app")
    .on("notify_deliveries")
    .columns(["app", "id"])
    .execute();

  await db.schema
    .createTable("notify_channel_state")
    .addColumn("channel", "text", (c) => c.notNull())
    .addColumn("subject", "text", (c) => c.notNull())
    .addColumn("state", "text", (c) => c.notNull())
    .addColumn("updated_at", "text", (c) => c.notNull())
    .addPrimaryKeyConstraint("notify_channel_state_pk", ["channel", "subject"])
    .execute();
}
