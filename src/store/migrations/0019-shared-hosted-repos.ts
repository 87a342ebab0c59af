import type { Kysely } from "kysely";
import type { Capabilities } from "../capabilities.js";

/**
 * Hosted repositories shared between servers (PostgreSQL): every accepted
 * push is one entry of its repository's log — the complete refs after the
 * push and a git bundle of the objects it added — so every server can bring
 * its own copy up to date (git/shared-hosted-repos.ts). `hosted_repos` holds
 * one row per repository: its log's identity, its head (the last entry) and
 * the row a push locks (`FOR UPDATE`) while it runs. The tables exist on
 * SQLite too (one migration list), where nothing writes them: a single
 * server's copy is the only one.
 */
export async function up(db: Kysely<unknown>, caps: Capabilities): Promise<void> {
  await db.schema
    .createTable("hosted_repos")
    // The repository's name under `hosted/` (domain hostedRepoName): `shop` or `shop/web`.
    .addColumn("repo", "text", (c) => c.primaryKey())
    // Random, made with the row: a copy made from another log (a restored or new database) is not mistaken for current.
    .addColumn("log_id", "text", (c) => c.notNull())
    .addColumn("head", "integer", (c) => c.notNull())
    .addColumn("updated_at", "text", (c) => c.notNull())
    .execute();
  await db.schema
    .createTable("hosted_repo_pushes")
    .addColumn("repo", "text", (c) => c.notNull())
    .addColumn("seq", "integer", (c) => c.notNull())
    // 1: the bundle needs nothing beforehand (the first push, or a compaction).
    .addColumn("full", "integer", (c) => c.notNull())
    // JSON object refname → object id: every ref of the repository after this push.
    .addColumn("refs", "text", (c) => c.notNull())
    // Null when the push added no objects (a deletion, a force push to a known commit).
    .addColumn("bundle", caps.dialect === "postgres" ? "bytea" : "blob")
    .addColumn("bytes", "integer", (c) => c.notNull())
    .addColumn("pushed_by", "text", (c) => c.notNull())
    .addColumn("created_at", "text", (c) => c.notNull())
    .addPrimaryKeyConstraint("hosted_repo_pushes_pk", ["repo", "seq"])
    .execute();
}
