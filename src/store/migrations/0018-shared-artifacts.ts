import type { Kysely } from "kysely";
import type { Capabilities } from "../capabilities.js";

/**
 * The shared artifact store (capability `sharedArtifacts`): every blob and
 * manifest written by any server, in the database every server reads, so
 * any server can serve any artifact (each keeps its data directory as a
 * cache). A blob is one row with its size and when it was last relied on
 * (`touched_at`: written, or found stored by a build or a deploy), and its
 * bytes in chunks of at most a megabyte, so no single value is huge and a
 * large blob is read a few chunks at a time. Created on both databases so
 * the schema is one; only PostgreSQL uses them (SQLite is one server, whose
 * data directory is the store).
 */
export async function up(db: Kysely<unknown>, caps: Capabilities): Promise<void> {
  await db.schema
    .createTable("artifact_blobs")
    .addColumn("digest", "text", (c) => c.primaryKey())
    .addColumn("size", "bigint", (c) => c.notNull())
    .addColumn("created_at", "text", (c) => c.notNull())
    .addColumn("touched_at", "text", (c) => c.notNull())
    .execute();
  await db.schema
    .createTable("artifact_blob_chunks")
    .addColumn("digest", "text", (c) => c.notNull())
    .addColumn("seq", "integer", (c) => c.notNull())
    .addColumn("data", caps.dialect === "postgres" ? "bytea" : "blob", (c) => c.notNull())
    .addPrimaryKeyConstraint("artifact_blob_chunks_pk", ["digest", "seq"])
    .execute();
}
