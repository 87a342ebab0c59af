import type { Kysely } from "kysely";
import { nowIso } from "./rows.js";
import type { Schema } from "./schema.js";

/** How far an environment's branches are ahead of what it runs, as last looked at. */
export interface UndeployedCount {
  app: string;
  env: string;
  /** The environment's release the count was made against (null: never deployed). */
  baseReleaseId: number | null;
  /** The newest commit not deployed (null when count is 0). */
  newestSha: string | null;
  count: number;
  /** The count stopped at its cap: at least `count`. */
  truncated: boolean;
  checkedAt: string;
}

/**
 * Undeployed commits per environment (table environment_undeployed),
 * written after each look at an app's repositories and after each deploy,
 * so that the overview of hundreds of apps reads them with one query
 * instead of running git for each.
 */
export class UndeployedStore {
  constructor(private readonly db: Kysely<Schema>) {}

  async save(entry: Omit<UndeployedCount, "checkedAt">): Promise<void> {
    const values = {
      base_release_id: entry.baseReleaseId,
      newest_sha: entry.newestSha,
      count: entry.count,
      truncated: entry.truncated ? 1 : 0,
      checked_at: nowIso(),
    };
    await this.db
      .insertInto("environment_undeployed")
      .values({ app: entry.app, env: entry.env, ...values })
      .onConflict((oc) => oc.columns(["app", "env"]).doUpdateSet(values))
      .execute();
  }

  async list(apps: string[]): Promise<UndeployedCount[]> {
    if (apps.length === 0) return [];
    const rows = await this.db
      .selectFrom("environment_undeployed")
      .selectAll()
      .where("app", "in", apps)
      .execute();
    return rows.map((r) => ({
      app: r.app,
      env: r.env,
      baseReleaseId: r.base_release_id,
      newestSha: r.newest_sha,
      count: r.count,
      truncated: r.truncated === 1,
      checkedAt: r.checked_at,
    }));
  }
}
