import { type Kysely, sql } from "kysely";
import { forEachLimited } from "../artifacts/limit.js";
import type { S3Bucket } from "../artifacts/s3-bucket.js";
import type { SharedBlobInput, SharedBlobStore } from "../artifacts/shared-blobs.js";
import { ArtifactBlobRows, batches, DIGESTS_PER_STATEMENT } from "./artifact-blobs.js";
import type { Schema } from "./schema.js";

/** Blobs whose rows one transaction holds while their objects are uploaded. */
const BLOBS_PER_TRANSACTION = 100;
/** Requests to the bucket in flight at once, per operation. */
const BUCKET_CONCURRENCY = 8;
/** Objects removed per transaction of the collector (their rows stay locked meanwhile). */
const REMOVALS_PER_TRANSACTION = 200;

/**
 * The shared artifact store with its bytes in an S3-compatible bucket and
 * its index in PostgreSQL: the same `artifact_blobs` rows as the chunk
 * backend (digest, size, touched_at), no chunk rows. So everything the
 * collector and the touch protocol rely on — `touchOrMissing`, `list`,
 * the advisory lock of `exclusively` — is the rows' and is inherited
 * unchanged; only where bytes are written, read and removed differs.
 *
 * The row lock orders bytes against rows, as the chunk backend's single
 * transaction does:
 * - put: the row is inserted first and the object uploaded while that
 *   insert is uncommitted. Another server storing the same digest waits on
 *   the insert and then skips it; no reader sees the row before its object
 *   exists. A put that fails rolls its rows back; an object it uploaded
 *   already is a stray (below).
 * - remove: the rows are locked (and their age re-checked) first, the
 *   objects deleted while they are locked, then only the rows whose object
 *   went are deleted. A server touching or re-storing such a blob waits for
 *   the lock and then finds it gone, so it uploads again and no delete can
 *   follow its upload.
 * - strays (objects with no row, from puts that never committed) are
 *   removed under a row of the collector's own, inserted uncommitted, so a
 *   put of the same digest meanwhile waits instead of losing its object.
 */
export class S3ArtifactBlobs extends ArtifactBlobRows implements SharedBlobStore {
  constructor(
    db: Kysely<Schema>,
    private readonly bucket: S3Bucket,
  ) {
    super(db);
  }

  check(): Promise<void> {
    return this.bucket.check();
  }

  close(): void {
    this.bucket.close();
  }

  override async put(blobs: readonly SharedBlobInput[]): Promise<void> {
    for (const group of batches(blobs, BLOBS_PER_TRANSACTION)) {
      await this.db.transaction().execute(async (trx) => {
        const ours = await this.insertRows(trx, group);
        await forEachLimited(
          group.filter((b) => ours.has(b.sha256)),
          BUCKET_CONCURRENCY,
          async (blob) => this.bucket.put(blob.sha256, blob.size, await blob.open()),
        );
      });
    }
  }

  override async readSmall(digests: readonly string[]): Promise<Map<string, Buffer>> {
    const whole = new Map<string, Buffer>();
    await forEachLimited([...new Set(digests)], BUCKET_CONCURRENCY, async (digest) => {
      whole.set(digest, await this.bucket.read(digest));
    });
    return whole;
  }

  override async *readLarge(digest: string): AsyncIterable<Buffer> {
    const body = await this.bucket.open(digest);
    try {
      for await (const chunk of body) yield chunk as Buffer;
    } finally {
      body.destroy();
    }
  }

  override async remove(
    digests: readonly string[],
    untouchedSince: string,
  ): Promise<{ digest: string; size: number }[]> {
    const removed: { digest: string; size: number }[] = [];
    let failure: unknown;
    for (const batch of batches([...new Set(digests)].sort(), REMOVALS_PER_TRANSACTION)) {
      await this.db.transaction().execute(async (trx) => {
        const { rows } = await sql<{ digest: string; size: string | number }>`
          SELECT digest, size FROM artifact_blobs
          WHERE digest = ANY(${batch}::text[]) AND touched_at < ${untouchedSince}
          ORDER BY digest FOR UPDATE`.execute(trx);
        const gone: { digest: string; size: number }[] = [];
        // An object that could not be deleted keeps its row (and is tried again next time).
        await forEachLimited(rows, BUCKET_CONCURRENCY, async (row) => {
          try {
            await this.bucket.delete(row.digest);
            gone.push({ digest: row.digest, size: Number(row.size) });
          } catch (error) {
            failure ??= error;
          }
        });
        if (gone.length === 0) return;
        await trx
          .deleteFrom("artifact_blobs")
          .where(
            "digest",
            "in",
            gone.map((g) => g.digest),
          )
          .execute();
        removed.push(...gone);
      });
    }
    if (failure !== undefined && removed.length === 0) throw failure;
    return removed;
  }

  async removeStrays(untouchedSince: string): Promise<{ digest: string; size: number }[]> {
    const old: { digest: string; size: number }[] = [];
    const before = Date.parse(untouchedSince);
    for await (const object of this.bucket.list())
      if (object.lastModified.getTime() < before) old.push({ digest: object.sha256, size: object.size });
    const removed: { digest: string; size: number }[] = [];
    for (const batch of batches(old, DIGESTS_PER_STATEMENT)) {
      const indexed = new Set(
        (
          await this.db
            .selectFrom("artifact_blobs")
            .select("digest")
            .where(
              "digest",
              "in",
              batch.map((b) => b.digest),
            )
            .execute()
        ).map((r) => r.digest),
      );
      const strays = batch.filter((b) => !indexed.has(b.digest));
      for (const group of batches(strays, REMOVALS_PER_TRANSACTION)) {
        await this.db.transaction().execute(async (trx) => {
          // Rows of our own, never committed: a put of one of these digests now waits for us.
          const claimed = await trx
            .insertInto("artifact_blobs")
            .values(
              group.map((b) => ({
                digest: b.digest,
                size: b.size,
                created_at: untouchedSince,
                touched_at: untouchedSince,
              })),
            )
            .onConflict((oc) => oc.column("digest").doNothing())
            .returning("digest")
            .execute();
          const ours = new Set(claimed.map((r) => r.digest));
          const going = group.filter((b) => ours.has(b.digest));
          await forEachLimited(going, BUCKET_CONCURRENCY, (b) => this.bucket.delete(b.digest));
          if (going.length > 0)
            await trx
              .deleteFrom("artifact_blobs")
              .where(
                "digest",
                "in",
                going.map((b) => b.digest),
              )
              .execute();
          removed.push(...going);
        });
      }
    }
    return removed;
  }
}
