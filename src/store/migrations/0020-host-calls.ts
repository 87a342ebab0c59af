import type { Kysely } from "kysely";
import type { Capabilities } from "../capabilities.js";

/**
 * Host operations routed between servers (issue 14): a deploy running on one
 * server calls an agent held by another through these rows. `host_calls` is
 * the durable state of one call (who asks, who executes, what, and the
 * outcome); `host_call_lines` carries the host's output back to the caller's
 * deploy log. LISTEN/NOTIFY only wakes the other side (see
 * store/pg-listener.ts). `servers` holds each server process's heartbeat, so
 * a server on another machine knows within seconds that one is gone. Created on SQLite too, so both schemas stay alike,
 * though a single SQLite server never routes a call.
 */
export async function up(db: Kysely<unknown>, _caps: Capabilities): Promise<void> {
  await db.schema
    .createTable("host_calls")
    .addColumn("id", "text", (c) => c.primaryKey())
    .addColumn("deploy_id", "integer", (c) => c.notNull())
    .addColumn("host", "text", (c) => c.notNull())
    .addColumn("caller", "text", (c) => c.notNull())
    .addColumn("target", "text", (c) => c.notNull())
    .addColumn("op", "text", (c) => c.notNull())
    .addColumn("args", "text", (c) => c.notNull())
    .addColumn("timeout_ms", "integer", (c) => c.notNull())
    // pending → running → done | failed; pending|running → abandoned (the deploy's lease was gone)
    .addColumn("status", "text", (c) => c.notNull())
    .addColumn("result", "text")
    .addColumn("error_code", "text")
    .addColumn("error_message", "text")
    .addColumn("cancel_requested", "integer", (c) => c.notNull().defaultTo(0))
    .addColumn("created_at", "text", (c) => c.notNull())
    .addColumn("started_at", "text")
    .addColumn("finished_at", "text")
    .execute();
  await db.schema.createIndex("host_calls_target").on("host_calls").columns(["target", "status"]).execute();
  await db.schema.createIndex("host_calls_deploy").on("host_calls").column("deploy_id").execute();
  await db.schema
    .createTable("host_call_lines")
    .addColumn("call_id", "text", (c) => c.notNull())
    .addColumn("seq", "integer", (c) => c.notNull())
    .addColumn("line", "text", (c) => c.notNull())
    .addColumn("continued", "integer", (c) => c.notNull())
    .addPrimaryKeyConstraint("host_call_lines_pk", ["call_id", "seq"])
    .execute();
  await db.schema
    .createTable("servers")
    .addColumn("owner", "text", (c) => c.primaryKey())
    .addColumn("seen_at", "text", (c) => c.notNull())
    .execute();
}
