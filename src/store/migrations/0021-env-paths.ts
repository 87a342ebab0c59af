import { type Kysely, sql } from "kysely";
import type { Capabilities } from "../capabilities.js";

/**
 * What a host holds is per app and place (issue 15): an environment may
 * have its own deploy path on the hosts, so one host can hold two layouts
 * of one app (staging at /var/www/shop-staging, production at
 * <root>/shop). host_apps gains `path` ('' for <root>/<app>) and its key
 * becomes (host_id, app, path). SQLite cannot change a primary key in
 * place, so the table is rebuilt (the same statements on both backends);
 * rows keep their place, ''.
 */
export async function up(db: Kysely<unknown>, _caps: Capabilities): Promise<void> {
  await db.schema
    .createTable("host_apps_0021")
    .addColumn("host_id", "integer", (c) => c.notNull())
    .addColumn("app", "text", (c) => c.notNull())
    .addColumn("path", "text", (c) => c.notNull().defaultTo(""))
    .addColumn("current_release", "text")
    .addColumn("slots", "text", (c) => c.notNull())
    .addColumn("releases", "text", (c) => c.notNull())
    .addColumn("updated_at", "text", (c) => c.notNull())
    .addPrimaryKeyConstraint("host_apps_place_pk", ["host_id", "app", "path"])
    .execute();
  await sql`
    INSERT INTO host_apps_0021 (host_id, app, path, current_release, slots, releases, updated_at)
    SELECT host_id, app, '', current_release, slots, releases, updated_at FROM host_apps`.execute(db);
  await db.schema.dropTable("host_apps").execute();
  await db.schema.alterTable("host_apps_0021").renameTo("host_apps").execute();
}
