import { type Kysely, sql } from "kysely";
import type { Capabilities } from "../capabilities.js";

/**
 * Pool state per host and app (it was per host: one app's failed canary
 * took the host out of the pool for every app on it). A row says a host is
 * depooled for an app; no row means pooled. Hosts depooled before this
 * migration stay depooled for the apps they then held (agents: as they
 * reported; SSH hosts: the app that declares them), since which app's
 * deploy depooled them was not recorded. `hosts.pool_state` is no longer
 * read or written.
 */
export async function up(db: Kysely<unknown>, _caps: Capabilities): Promise<void> {
  await db.schema
    .createTable("host_pool")
    .addColumn("host_id", "integer", (c) => c.notNull())
    .addColumn("app", "text", (c) => c.notNull())
    .addColumn("pool_state", "text", (c) => c.notNull())
    .addColumn("updated_at", "text", (c) => c.notNull())
    .addPrimaryKeyConstraint("host_pool_pk", ["host_id", "app"])
    .execute();
  const now = new Date().toISOString();
  await sql`
    INSERT INTO host_pool (host_id, app, pool_state, updated_at)
    SELECT h.id, a.app, 'depooled', ${now} FROM hosts h JOIN host_apps a ON a.host_id = h.id
    WHERE h.pool_state = 'depooled' AND h.kind = 'agent'`.execute(db);
  await sql`
    INSERT INTO host_pool (host_id, app, pool_state, updated_at)
    SELECT h.id, h.app, 'depooled', ${now} FROM hosts h
    WHERE h.pool_state = 'depooled' AND h.kind = 'ssh' AND h.app IS NOT NULL`.execute(db);
}
