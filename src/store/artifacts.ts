import type { Kysely, Selectable } from "kysely";
import { type ArtifactInfo, artifactNotFound } from "../domain/artifact.js";
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
 * Which artifacts exist, for which app, which release fingerprint they were
 * first built for, and which build inputs produced them. The
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

  /**
   * Remembers that a build with these inputs (its key, domain/build-key.ts)
   * produced this artifact. Several keys may name one artifact (builds whose
   * different inputs happened to agree); one key names one artifact, the
   * first recorded (two workers racing on one key built the same thing).
   */
  async recordBuild(app: string, buildKey: string, digest: string): Promise<void> {
    try {
      await this.db
        .insertInto("artifact_builds")
        .values({ app, build_key: buildKey, digest, created_at: nowIso() })
        .onConflict((oc) => oc.columns(["app", "build_key"]).doNothing())
        .execute();
    } catch (error) {
      if (!this.caps.isUniqueViolation(error)) throw error;
    }
  }

  /** The artifact a build with these inputs produced, if it is still recorded. */
  async byBuildKey(app: string, buildKey: string): Promise<ArtifactInfo | undefined> {
    // Joined with artifacts: an artifact removed by retention is never handed out.
    const row = await this.db
      .selectFrom("artifact_builds as b")
      .innerJoin("artifacts as a", "a.digest", "b.digest")
      .selectAll("a")
      .where("b.app", "=", app)
      .where("b.build_key", "=", buildKey)
      .where("a.app", "=", app)
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
    if (!info) throw artifactNotFound(digest);
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
