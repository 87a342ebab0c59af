import type { Kysely } from "kysely";
import type { Capabilities } from "../capabilities.js";

/**
 * The audit trail says not only who (the token's name) but which token, with
 * which role, from where (api, cli, chat, webhook, schedule) and on what
 * (`target`: a deploy's label, a token's name). Rows written before this
 * migration keep nulls there. The indexes serve `turnout audit`'s filters,
 * all of which list newest first.
 */
export async function up(db: Kysely<unknown>, _caps: Capabilities): Promise<void> {
  await db.schema.alterTable("audit_events").addColumn("actor_id", "integer").execute();
  await db.schema.alterTable("audit_events").addColumn("role", "text").execute();
  await db.schema.alterTable("audit_events").addColumn("source", "text").execute();
  await db.schema.alterTable("audit_events").addColumn("target", "text").execute();
  await db.schema.createIndex("audit_events_action").on("audit_events").columns(["action", "id"]).execute();
  await db.schema.createIndex("audit_events_actor").on("audit_events").columns(["actor", "id"]).execute();
  await db.schema.createIndex("audit_events_at").on("audit_events").columns(["at"]).execute();
}
