import type { Kysely } from "kysely";

/**
 * Emergency deploys and per-host history:
 * - `deploys.emergency` / `releases.emergency`: the working tree a person
 *   deployed past review (JSON: base commit, files changed from it, reason),
 *   kept on the release so status and history can say the environment runs an
 *   unreviewed change until a normal deploy replaces it;
 * - `deploy_hosts.switched_at`: when the host's `current` moved to the
 *   deploy's release (the host's history says when, not only whether);
 * - `releases.provider_release`: the platform's id of a release (Heroku).
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable("deploys").addColumn("emergency", "text").execute();
  await db.schema.alterTable("releases").addColumn("emergency", "text").execute();
  await db.schema.alterTable("deploy_hosts").addColumn("switched_at", "text").execute();
  // Platform providers (Heroku): the platform's own release id, which a rollback asks it to bring back.
  await db.schema.alterTable("releases").addColumn("provider_release", "text").execute();
}
