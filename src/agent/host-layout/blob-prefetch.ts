import { rmSync } from "node:fs";
import { isSha256 } from "../../domain/artifact.js";
import { TurnoutError } from "../../domain/errors.js";
import type { BlobSource, PrefetchBlob, PrefetchResult } from "../../providers/fleet/host-ops.js";
import type { BlobCache } from "./blob-cache.js";
import { type BlobToFetch, fetchBlobs } from "./blob-fetch.js";
import { ensureRealDir } from "./fs-util.js";

/**
 * Blobs fetched into the cache before the release that holds them is staged
 * (agent protocol 3, `prefetch`): the server offers them while it is still
 * building the artifact, and staging then finds them cached. The same fetch
 * code as staging (batches, bounded requests, every digest and size checked
 * on the way in); a blob goes to a temp file beside the cache and is named
 * in the cache once its data is durable (BlobCache.adopt), so a name is never
 * given to unverified bytes.
 *
 * Best-effort by design: a prefetch that fails leaves the cache as it was
 * (temps removed) and staging fetches what is missing. Staging waits for the
 * prefetches in flight (`settled`) before it looks at the cache: they are
 * downloading blobs it needs, and fetching them twice would cost more.
 */
export class BlobPrefetcher {
  /** Digests a prefetch of this process is downloading now: a later offer counts them as cached. */
  private readonly fetching = new Set<string>();
  private readonly running = new Set<Promise<unknown>>();

  constructor(private readonly cache: BlobCache) {}

  /**
   * Fetches the offered blobs the cache lacks. Registered as running before
   * its first await, so a stage call that arrives right after the offer
   * waits for it.
   */
  run(
    blobs: readonly PrefetchBlob[],
    source: BlobSource,
    signal: AbortSignal,
    /** Awaited after the digests are claimed, before the cache is touched (a blob collection ending). */
    ready?: Promise<unknown>,
  ): Promise<PrefetchResult> {
    const work = this.fetch(blobs, source, signal, ready);
    const tracked = work.catch(() => undefined);
    this.running.add(tracked);
    void tracked.finally(() => this.running.delete(tracked));
    return work;
  }

  /** Resolves once every prefetch running now has ended (either way). */
  async settled(): Promise<boolean> {
    if (this.running.size === 0) return false;
    await Promise.all([...this.running]);
    return true;
  }

  private async fetch(
    blobs: readonly PrefetchBlob[],
    source: BlobSource,
    signal: AbortSignal,
    ready: Promise<unknown> | undefined,
  ): Promise<PrefetchResult> {
    for (const blob of blobs) {
      if (!isSha256(blob.sha256) || !Number.isSafeInteger(blob.size) || blob.size < 0) {
        throw new TurnoutError(
          "E_VALIDATION",
          `invalid prefetch blob: ${JSON.stringify(blob).slice(0, 200)}`,
        );
      }
    }
    const mine: BlobToFetch[] = [];
    const seen = new Set<string>();
    let cached = 0;
    // Synchronous up to here: the digests are claimed before any await.
    for (const { sha256, size } of blobs) {
      if (seen.has(sha256)) continue;
      seen.add(sha256);
      if (this.fetching.has(sha256)) {
        cached++;
        continue;
      }
      this.fetching.add(sha256);
      mine.push({ sha256, size, dest: "", mode: 0o444 });
    }
    try {
      if (ready) await ready.catch(() => undefined);
      signal.throwIfAborted();
      const toFetch: BlobToFetch[] = [];
      for (const blob of mine) {
        if (this.cache.has(blob.sha256, blob.size)) cached++;
        else toFetch.push({ ...blob, dest: this.cache.tempFile(blob.sha256) });
      }
      if (toFetch.length === 0) return { fetched: 0, bytes: 0, cached };
      await ensureRealDir(this.cache.dir);
      await ensureRealDir(this.cache.tmpDir);
      try {
        const bytes = await fetchBlobs(toFetch, source, signal);
        await this.cache.adopt(
          toFetch.map((f) => ({ sha256: f.sha256, size: f.size, file: f.dest, mode: 0o444 })),
          signal,
        );
        return { fetched: toFetch.length, bytes, cached };
      } finally {
        // Adopted blobs keep their cache name (a hard link); the temp names go either way.
        for (const f of toFetch) rmSync(f.dest, { force: true });
      }
    } finally {
      for (const blob of mine) this.fetching.delete(blob.sha256);
    }
  }
}
