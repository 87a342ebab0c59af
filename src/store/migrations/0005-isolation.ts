import type { Kysely } from "kysely";
import type { Capabilities } from "../capabilities.js";

/**
 * Walls between apps (issue 10): what a host may receive is decided on the
 * server side, and a host may read only what the server sent it.
 *
 * - tokens.labels: the labels an agent (enrollment) token grants the hosts
 *   enrolled with it, a JSON list of `key=value` (NULL: whatever they declare).
 * - hosts.grant_apps / grant_labels: a host's grant (NULL: every app /
 *   declared labels). Rows from before stay NULL: unrestricted, so that an
 *   upgrade breaks no fleet, and flagged as such.
 * - hosts.app: the app whose manifest declares an SSH host (host names are
 *   global; NULL until a deploy of that app claims a row from before).
 * - host_artifacts: which artifacts the server sent to which host, written
 *   before the stage call; blob and manifest downloads by a host token are
 *   checked against it.
 */
export async function up(db: Kysely<unknown>, _caps: Capabilities): Promise<void> {
  await db.schema.alterTable("tokens").addColumn("labels", "text").execute();
  await db.schema.alterTable("hosts").addColumn("grant_apps", "text").execute();
  await db.schema.alterTable("hosts").addColumn("grant_labels", "text").execute();
  await db.schema.alterTable("hosts").addColumn("app", "text").execute();
  await db.schema
    .createTable("host_artifacts")
    .addColumn("host_id", "integer", (c) => c.notNull())
    .addColumn("digest", "text", (c) => c.notNull())
    .addColumn("app", "text", (c) => c.notNull())
    .addColumn("sent_at", "text", (c) => c.notNull())
    .addPrimaryKeyConstraint("host_artifacts_pk", ["host_id", "digest"])
    .execute();
}
