import type { Kysely } from "kysely";
import type { CommitSummary, Deploy } from "../domain/deploy.js";
import { toDeploy, toJson } from "./rows.js";
import type { Schema } from "./schema.js";

/**
 * Deploys' commits described (subject, author, date), kept on the deploy
 * row: written once when the deploy is admitted, read with every deploy, so
 * no list ever asks git, and the description survives a lost mirror.
 */
export class CommitDescriptions {
  constructor(private readonly db: Kysely<Schema>) {}

  /** Records the description unless one is there already (the first writer wins; they agree anyway). */
  async record(deployId: number, commits: Record<string, CommitSummary>): Promise<void> {
    await this.db
      .updateTable("deploys")
      .set({ commits: toJson(commits) })
      .where("id", "=", deployId)
      .where("commits", "is", null)
      .execute();
  }

  /** Deploys by id, in one query (the overview's live releases, with their commits). */
  async deploys(ids: number[]): Promise<Deploy[]> {
    if (ids.length === 0) return [];
    const rows = await this.db
      .selectFrom("deploys")
      .selectAll()
      .where("id", "in", [...new Set(ids)])
      .execute();
    return rows.map(toDeploy);
  }
}
