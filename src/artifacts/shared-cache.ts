import { createHash } from "node:crypto";
import { open, unlink } from "node:fs/promises";
import { isTurnoutError, notFound, TurnoutError } from "../domain/errors.js";
import type { BlobDir } from "./blob-dir.js";
import { forEachLimited } from "./limit.js";
import type { SharedBlobStore } from "./shared-blobs.js";

/** Blobs up to this size are fetched together, this many bytes per query at most. */
const SMALL_BATCH_BYTES = 8 * 1024 * 1024;
/** Cached blobs hashed at once when first served. */
const CHECK_CONCURRENCY = 8;
/** Digests remembered as checked; past it the memory starts again (and blobs are checked again). */
const MAX_VERIFIED = 1_000_000;

/**
 * The data directory as a cache of the shared store (several servers on
 * PostgreSQL). Writes publish: every blob of a new artifact is in the shared
 * store, durably, before its manifest is, and the manifest before the
 * caller records the artifact. Reads go through: a blob missing here is
 * fetched from the shared store, its digest checked, and kept in a pack.
 *
 * A cached blob is checked against its digest the first time this process
 * serves it (then remembered): a copy damaged on disk or by hand is dropped
 * and fetched again instead of being sent to hosts, which would refuse it.
 */
export class SharedCache {
  private verified = new Set<string>();
  private readonly fetching = new Map<string, Promise<void>>();

  constructor(
    private readonly blobs: BlobDir,
    readonly shared: SharedBlobStore,
    /** The file blobs a cached manifest names; undefined when the blob is no manifest. */
    readonly blobsOfManifest: (digest: string) => Promise<string[] | undefined>,
  ) {}

  /** Blobs this process wrote and hashed itself need no check. */
  trust(digests: Iterable<string>): void {
    for (const digest of digests) this.remember(digest);
  }

  /**
   * Publishes a stored artifact: its blobs that the shared store lacks
   * (those it has are touched, so its collector keeps them past the grace),
   * then its manifest.
   */
  async publish(manifestDigest: string, blobDigests: readonly string[]): Promise<void> {
    const files = [...new Set(blobDigests)].filter((d) => d !== manifestDigest);
    const missing = await this.shared.touchOrMissing([...files, manifestDigest]);
    const upload = (digests: string[]) =>
      this.shared.put(
        digests.map((sha256) => {
          const found = this.blobs.locate(sha256);
          if (!found) throw notFound(`blob ${sha256}`, { sha256 });
          return {
            sha256,
            size: found.size,
            open: async () =>
              found.size <= SMALL_BATCH_BYTES
                ? ((await this.blobs.read(sha256)) ?? missingBlob(sha256))
                : (await this.blobs.open(sha256)).stream,
          };
        }),
      );
    try {
      await upload(files.filter((d) => missing.has(d)));
      if (missing.has(manifestDigest)) await upload([manifestDigest]);
    } catch (error) {
      // A damaged local copy is not published, and goes: the next build writes it again.
      const sha256 = isTurnoutError(error)
        ? (error.details as { sha256?: unknown } | undefined)?.sha256
        : undefined;
      if (typeof sha256 === "string") await this.drop(sha256);
      throw error;
    }
  }

  /**
   * Whether the shared store holds a whole artifact (or a blob): touched,
   * with every blob its manifest names, so that a collection on any server
   * keeps them for the grace while the caller records that it uses them.
   */
  async holdsWhole(digest: string): Promise<boolean> {
    if ((await this.shared.touchOrMissing([digest])).size > 0) return false;
    let blobs: string[] | undefined;
    try {
      await this.ensure([digest]);
      blobs = await this.blobsOfManifest(digest);
    } catch {
      return false;
    }
    if (!blobs || blobs.length === 0) return true;
    return (await this.shared.touchOrMissing(blobs)).size === 0;
  }

  /**
   * Makes every digest present here, checked; E_NOT_FOUND naming the first
   * that neither this cache nor the shared store holds. A digest being
   * checked or fetched for one caller is waited for by the others: the hosts
   * of a fleet download the same blobs at the same moment, and each used to
   * hash the cached copy, or fetch it from the shared store into a pack of
   * its own, once per host (docs/benchmarks.md, "third round").
   */
  async ensure(digests: readonly string[]): Promise<void> {
    const need: string[] = [];
    const waits: Promise<void>[] = [];
    for (const digest of new Set(digests)) {
      const inFlight = this.fetching.get(digest);
      if (inFlight) {
        waits.push(inFlight);
        continue;
      }
      if (this.verified.has(digest) && this.blobs.holds(digest)) continue;
      this.verified.delete(digest);
      need.push(digest);
    }
    if (need.length > 0) {
      // Marked in flight before anything is awaited, so a caller arriving meanwhile waits for this.
      const done = this.checkOrFetch(need);
      for (const digest of need) this.fetching.set(digest, done);
      done
        .finally(() => {
          for (const digest of need) if (this.fetching.get(digest) === done) this.fetching.delete(digest);
        })
        .catch(() => undefined);
      waits.push(done);
    }
    await Promise.all(waits);
  }

  /** Checks the cached copies of `digests` and fetches the others (and the damaged ones). */
  private async checkOrFetch(digests: readonly string[]): Promise<void> {
    const need: string[] = [];
    const unchecked: string[] = [];
    for (const digest of digests) (this.blobs.holds(digest) ? unchecked : need).push(digest);
    // A release's first download checks thousands of small cached blobs: a few reads at a time.
    await forEachLimited(unchecked, CHECK_CONCURRENCY, async (digest) => {
      if (!(await this.check(digest))) need.push(digest);
    });
    if (need.length > 0) await this.fetch(need);
  }

  /** Hashes the cached copy; a damaged one is dropped (a loose file removed, a packed one no longer served). */
  private async check(digest: string): Promise<boolean> {
    const found = this.blobs.locate(digest);
    if (!found) return false;
    const hash = createHash("sha256");
    const handle = await open(found.file, "r").catch(() => undefined);
    if (!handle) return false;
    try {
      const stream = handle.createReadStream({
        start: found.offset,
        end: found.offset + Math.max(found.size, 1) - 1,
        autoClose: false,
      });
      if (found.size > 0) for await (const chunk of stream) hash.update(chunk as Buffer);
    } finally {
      await handle.close();
    }
    if (hash.digest("hex") === digest) {
      this.remember(digest);
      return true;
    }
    await this.drop(digest);
    return false;
  }

  /** Forgets a damaged local copy: a loose file is removed, a packed one no longer served. */
  private async drop(digest: string): Promise<void> {
    this.verified.delete(digest);
    const found = this.blobs.locate(digest);
    if (!found) return;
    if (found.file === this.blobs.blobPath(digest)) await unlink(found.file).catch(() => undefined);
    else this.blobs.packs.forgetBlob(digest);
  }

  /** From the shared store into one pack: small blobs a batch per query, large ones streamed. */
  private async fetch(digests: readonly string[]): Promise<void> {
    const sizes = await this.shared.sizes(digests);
    for (const digest of digests)
      if (!sizes.has(digest)) throw notFound(`blob ${digest}`, { sha256: digest });
    await this.blobs.ensureReady();
    const pack = this.blobs.beginPack();
    try {
      const keep = (digest: string, bytes: readonly Buffer[]) => {
        pack.begin();
        for (const b of bytes) pack.write(b);
        const got = pack.finish();
        if (got.sha256 !== digest) {
          pack.drop(got.sha256);
          throw damaged(digest);
        }
      };
      let batch: string[] = [];
      let batchBytes = 0;
      const flush = async () => {
        if (batch.length === 0) return;
        const read = await this.shared.readSmall(batch);
        for (const digest of batch) keep(digest, [read.get(digest)!]);
        batch = [];
        batchBytes = 0;
      };
      for (const digest of digests) {
        const size = sizes.get(digest)!;
        if (size > SMALL_BATCH_BYTES) {
          pack.begin();
          for await (const chunk of this.shared.readLarge(digest)) pack.write(chunk);
          const got = pack.finish();
          if (got.sha256 !== digest) {
            pack.drop(got.sha256);
            throw damaged(digest);
          }
          continue;
        }
        if (batchBytes + size > SMALL_BATCH_BYTES) await flush();
        batch.push(digest);
        batchBytes += size;
      }
      await flush();
    } catch (error) {
      pack.abort();
      throw error;
    }
    await pack.commit();
    // A copy dropped as damaged may still be the first the pack index finds; the new one is served now.
    for (const digest of digests) this.remember(digest);
  }

  private remember(digest: string): void {
    if (this.verified.size >= MAX_VERIFIED) this.verified = new Set();
    this.verified.add(digest);
  }
}

function damaged(digest: string): TurnoutError {
  return new TurnoutError(
    "E_INTERNAL",
    `blob ${digest.slice(0, 12)} read from the shared store does not match its digest`,
    { sha256: digest },
  );
}

function missingBlob(sha256: string): never {
  throw notFound(`blob ${sha256}`, { sha256 });
}
