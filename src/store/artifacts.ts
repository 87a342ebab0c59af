import type { Kysely, Selectable } from "kysely";
import type { ArtifactInfo } from "../domain/artifact.js";
import { notFound } from "../domain/errors.js";
import type { Capabilities } from "./capabilities.js";
import { nowIso } from "./rows.js";
import type { ArtifactsTable, Schema } from "./schema.js";

export interface ArtifactRecord {
  digest: string;
  app: string;
  /** The release fingerprint it was built for; null for uploads. */
  fingerprint: string | null;
  files: number;
  bytes: number;
  source: ArtifactInfo["source"];
}

/**
 * Which artifacts exist, for which app and which release fingerprint. The
 * files themselves live in the artifact store on disk; a row is written only
 * after its manifest and blobs are, so a row always names something whole.
 */
export class ArtifactRecords {
  constructor(
    private readonly db: Kysely<Schema>,
    private readonly caps: Capabilities,
  ) {}

  /**
   * Idempotent: the same digest recorded again (a rebuild, a re-upload, two
   * workers racing) keeps the first row; it only gains the fingerprint it
   * lacked, so a later build of that release finds it, and `stored_at`
   * moves, so the garbage collector's grace for unreferenced artifacts
   * starts again.
   */
  async record(info: ArtifactRecord): Promise<void> {
    const now = nowIso();
    try {
      await this.db
        .insertInto("artifacts")
        .values({
          digest: info.digest,
          app: info.app,
          fingerprint: info.fingerprint,
          files: info.files,
          bytes: info.bytes,
          source: info.source,
          created_at: now,
          stored_at: now,
        })
        .onConflict((oc) => oc.column("digest").doUpdateSet({ stored_at: now }))
        .execute();
    } catch (error) {
      if (!this.caps.isUniqueViolation(error)) throw error;
    }
    if (info.fingerprint !== null) {
      await this.db
        .updateTable("artifacts")
        .set({ fingerprint: info.fingerprint })
        .where("digest", "=", info.digest)
        .where("app", "=", info.app)
        .where("fingerprint", "is", null)
        .execute();
    }
  }

  /** The newest artifact built for a release fingerprint of an app, if any. */
  async byFingerprint(app: string, fingerprint: string): Promise<ArtifactInfo | undefined> {
    const row = await this.db
      .selectFrom("artifacts")
      .selectAll()
      .where("app", "=", app)
      .where("fingerprint", "=", fingerprint)
      .orderBy("created_at", "desc")
      .limit(1)
      .executeTakeFirst();
    return row ? toArtifactInfo(row) : undefined;
  }

  async find(digest: string): Promise<ArtifactInfo | undefined> {
    const row = await this.db
      .selectFrom("artifacts")
      .selectAll()
      .where("digest", "=", digest)
      .executeTakeFirst();
    return row ? toArtifactInfo(row) : undefined;
  }

  async get(digest: string): Promise<ArtifactInfo> {
    const info = await this.find(digest);
    if (!info) throw notFound(`artifact ${digest}`, { digest });
    return info;
  }

  /** Newest first. */
  async list(app: string, limit = 50): Promise<ArtifactInfo[]> {
    const rows = await this.db
      .selectFrom("artifacts")
      .selectAll()
      .where("app", "=", app)
      .orderBy("created_at", "desc")
      .orderBy("digest")
      .limit(limit)
      .execute();
    return rows.map(toArtifactInfo);
  }
}

function toArtifactInfo(row: Selectable<ArtifactsTable>): ArtifactInfo {
  return {
    digest: row.digest,
    app: row.app,
    fingerprint: row.fingerprint,
    files: row.files,
    bytes: Number(row.bytes),
    source: row.source === "uploaded" ? "uploaded" : "built",
    createdAt: row.created_at,
  };
}
