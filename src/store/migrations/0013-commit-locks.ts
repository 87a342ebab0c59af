import { type Kysely, sql } from "kysely";
import type { Capabilities } from "../capabilities.js";

/**
 * Commit locks: a commit of an app marked as not deployable (a bad merge a
 * revert will follow). Unlocking keeps the row (unlocked_at/by) as history;
 * at most one lock per commit is in force, which the schema holds.
 */
export async function up(db: Kysely<unknown>, caps: Capabilities): Promise<void> {
  const table = db.schema.createTable("commit_locks");
  await (caps.autoIncrementPrimaryKey === "serial"
    ? table.addColumn("id", "serial", (c) => c.primaryKey())
    : table.addColumn("id", "integer", (c) => c.primaryKey().autoIncrement())
  )
    .addColumn("app", "text", (c) => c.notNull())
    .addColumn("sha", "text", (c) => c.notNull())
    .addColumn("reason", "text", (c) => c.notNull())
    .addColumn("locked_by", "text", (c) => c.notNull())
    .addColumn("locked_at", "text", (c) => c.notNull())
    .addColumn("unlocked_at", "text")
    .addColumn("unlocked_by", "text")
    .execute();
  await db.schema
    .createIndex("commit_locks_one_in_force")
    .unique()
    .on("commit_locks")
    .columns(["app", "sha"])
    .where(sql.ref("unlocked_at"), "is", null)
    .execute();
}
