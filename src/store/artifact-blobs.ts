import { createHash } from "node:crypto";
import { type Kysely, sql, type Transaction } from "kysely";
import type { SharedBlobInfo, SharedBlobInput, SharedBlobStore } from "../artifacts/shared-blobs.js";
import { TurnoutError } from "../domain/errors.js";
import { nowIso } from "./rows.js";
import type { Schema } from "./schema.js";

/** Bytes per chunk row: no single value is large, and a big blob is read a few at a time. */
export const CHUNK_BYTES = 1024 * 1024;
/** Digests per statement that names them (one array parameter). */
export const DIGESTS_PER_STATEMENT = 5000;
/** Blobs written in one transaction, at most (many small files cost one commit, not one each). */
const BLOBS_PER_TRANSACTION = 500;
/** Bytes written in one transaction before it commits, roughly; a larger blob has one of its own. */
const BYTES_PER_TRANSACTION = 16 * 1024 * 1024;
/** Bytes of chunk rows in one INSERT. */
const BYTES_PER_INSERT = 4 * 1024 * 1024;
/** Chunks read per query of a large blob. */
const CHUNKS_PER_READ = 8;
/** pg_try_advisory_xact_lock key of the shared store's collection ("turnoutg"). */
const COLLECTION_LOCK = 0x7475726e6f7574;

/**
 * The shared artifact store in PostgreSQL (migration 0018): a row per blob
 * and its bytes in chunk rows. Why the database and not a file system or a
 * bucket: it is the one thing every server already shares, it needs no
 * further credentials, and a commit is durable, so "published before
 * recorded" is one ordering of commits (docs/architecture.md).
 *
 * Row locks make `touchOrMissing` and `remove` atomic per blob: both lock
 * the rows they name in digest order (so they never deadlock), and the
 * remover re-checks `touched_at` on the row it locked, so a blob touched
 * while a collection runs stays and one removed first is reported missing.
 */
export class ArtifactBlobRows implements SharedBlobStore {
  constructor(protected readonly db: Kysely<Schema>) {}

  async touchOrMissing(digests: readonly string[]): Promise<Set<string>> {
    const missing = new Set(digests);
    const now = nowIso();
    for (const batch of batches([...missing], DIGESTS_PER_STATEMENT)) {
      const { rows } = await sql<{ digest: string }>`
        UPDATE artifact_blobs SET touched_at = ${now}
        WHERE digest IN (
          SELECT digest FROM artifact_blobs WHERE digest = ANY(${batch}::text[]) ORDER BY digest FOR UPDATE
        )
        RETURNING digest`.execute(this.db);
      for (const row of rows) missing.delete(row.digest);
    }
    return missing;
  }

  async put(blobs: readonly SharedBlobInput[]): Promise<void> {
    let group: SharedBlobInput[] = [];
    let bytes = 0;
    for (const blob of blobs) {
      if (
        group.length > 0 &&
        (group.length >= BLOBS_PER_TRANSACTION || bytes + blob.size > BYTES_PER_TRANSACTION)
      ) {
        await this.putGroup(group);
        group = [];
        bytes = 0;
      }
      group.push(blob);
      bytes += blob.size;
    }
    if (group.length > 0) await this.putGroup(group);
  }

  /**
   * Inserts the rows of the blobs not stored yet and says which are ours to
   * write. Another server storing the same blob now: its insert wins (or
   * ours waits for it until its transaction ends), never both.
   */
  protected async insertRows(
    trx: Transaction<Schema>,
    group: readonly SharedBlobInput[],
  ): Promise<Set<string>> {
    const now = nowIso();
    const inserted = await trx
      .insertInto("artifact_blobs")
      .values(group.map((b) => ({ digest: b.sha256, size: b.size, created_at: now, touched_at: now })))
      .onConflict((oc) => oc.column("digest").doNothing())
      .returning("digest")
      .execute();
    return new Set(inserted.map((r) => r.digest));
  }

  /** One transaction: the blobs' rows (those not stored yet), then their chunks, committed together. */
  private putGroup(group: readonly SharedBlobInput[]): Promise<void> {
    return this.db.transaction().execute(async (trx) => {
      const ours = await this.insertRows(trx, group);
      const pending: { digest: string; seq: number; data: Buffer }[] = [];
      let pendingBytes = 0;
      const flush = async () => {
        if (pending.length === 0) return;
        await trx.insertInto("artifact_blob_chunks").values(pending.splice(0)).execute();
        pendingBytes = 0;
      };
      for (const blob of group) {
        if (!ours.has(blob.sha256)) continue;
        await writeChunks(blob, async (seq, data) => {
          pending.push({ digest: blob.sha256, seq, data });
          pendingBytes += data.byteLength;
          if (pendingBytes >= BYTES_PER_INSERT) await flush();
        });
      }
      await flush();
    });
  }

  async sizes(digests: readonly string[]): Promise<Map<string, number>> {
    const sizes = new Map<string, number>();
    for (const batch of batches([...new Set(digests)], DIGESTS_PER_STATEMENT)) {
      const rows = await this.db
        .selectFrom("artifact_blobs")
        .select(["digest", "size"])
        .where("digest", "in", batch)
        .execute();
      for (const row of rows) sizes.set(row.digest, Number(row.size));
    }
    return sizes;
  }

  async readSmall(digests: readonly string[]): Promise<Map<string, Buffer>> {
    const parts = new Map<string, Buffer[]>();
    for (const batch of batches([...new Set(digests)], DIGESTS_PER_STATEMENT)) {
      const rows = await this.db
        .selectFrom("artifact_blob_chunks")
        .select(["digest", "data"])
        .where("digest", "in", batch)
        .orderBy("digest")
        .orderBy("seq")
        .execute();
      for (const row of rows) {
        const list = parts.get(row.digest) ?? [];
        list.push(row.data);
        parts.set(row.digest, list);
      }
    }
    const whole = new Map<string, Buffer>();
    for (const digest of digests) whole.set(digest, Buffer.concat(parts.get(digest) ?? []));
    return whole;
  }

  async *readLarge(digest: string): AsyncIterable<Buffer> {
    for (let seq = 0; ; seq += CHUNKS_PER_READ) {
      const rows = await this.db
        .selectFrom("artifact_blob_chunks")
        .select("data")
        .where("digest", "=", digest)
        .where("seq", ">=", seq)
        .where("seq", "<", seq + CHUNKS_PER_READ)
        .orderBy("seq")
        .execute();
      for (const row of rows) yield row.data;
      if (rows.length < CHUNKS_PER_READ) return;
    }
  }

  async list(): Promise<SharedBlobInfo[]> {
    const rows = await this.db
      .selectFrom("artifact_blobs")
      .select(["digest", "size", "touched_at"])
      .execute();
    return rows.map((r) => ({ digest: r.digest, size: Number(r.size), touchedAt: r.touched_at }));
  }

  async remove(
    digests: readonly string[],
    untouchedSince: string,
  ): Promise<{ digest: string; size: number }[]> {
    const removed: { digest: string; size: number }[] = [];
    for (const batch of batches([...new Set(digests)].sort(), DIGESTS_PER_STATEMENT)) {
      await this.db.transaction().execute(async (trx) => {
        // Locked in digest order, as touchOrMissing does; the age is checked on the locked row.
        const { rows } = await sql<{ digest: string; size: string | number }>`
          SELECT digest, size FROM artifact_blobs
          WHERE digest = ANY(${batch}::text[]) AND touched_at < ${untouchedSince}
          ORDER BY digest FOR UPDATE`.execute(trx);
        if (rows.length === 0) return;
        const going = rows.map((r) => r.digest);
        await deleteRows(trx, going);
        for (const row of rows) removed.push({ digest: row.digest, size: Number(row.size) });
      });
    }
    return removed;
  }

  async exclusively<T>(fn: () => Promise<T>): Promise<T | undefined> {
    // Held by this transaction's connection until it ends; the work itself uses other connections.
    return this.db.transaction().execute(async (trx) => {
      const { rows } = await sql<{ locked: boolean }>`
        SELECT pg_try_advisory_xact_lock(${COLLECTION_LOCK}) AS locked`.execute(trx);
      if (!rows[0]?.locked) return undefined;
      return fn();
    });
  }
}

async function deleteRows(trx: Transaction<Schema>, digests: string[]): Promise<void> {
  await trx.deleteFrom("artifact_blob_chunks").where("digest", "in", digests).execute();
  await trx.deleteFrom("artifact_blobs").where("digest", "in", digests).execute();
}

/** Reads a blob, cut into CHUNK_BYTES rows, hashing it on the way: a mismatch throws before anything commits. */
async function writeChunks(
  blob: SharedBlobInput,
  emit: (seq: number, data: Buffer) => Promise<void>,
): Promise<void> {
  const hash = createHash("sha256");
  let seq = 0;
  let size = 0;
  let buffer = Buffer.allocUnsafe(Math.min(CHUNK_BYTES, Math.max(blob.size, 1)));
  let filled = 0;
  const source = await blob.open();
  const stream = Buffer.isBuffer(source) ? undefined : source;
  try {
    for await (const piece of (stream ?? [source]) as AsyncIterable<Buffer> | Buffer[]) {
      hash.update(piece);
      size += piece.byteLength;
      let offset = 0;
      while (offset < piece.byteLength) {
        const n = Math.min(buffer.length - filled, piece.byteLength - offset);
        piece.copy(buffer, filled, offset, offset + n);
        filled += n;
        offset += n;
        if (filled === buffer.length) {
          await emit(seq++, buffer);
          buffer = Buffer.allocUnsafe(CHUNK_BYTES);
          filled = 0;
        }
      }
    }
  } finally {
    stream?.destroy();
  }
  if (filled > 0) await emit(seq++, buffer.subarray(0, filled));
  if (hash.digest("hex") !== blob.sha256 || size !== blob.size) {
    throw new TurnoutError(
      "E_INTERNAL",
      `the local copy of blob ${blob.sha256.slice(0, 12)} does not match its digest: not published to the shared store`,
      { sha256: blob.sha256 },
    );
  }
}

export function batches<T>(items: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}
