import { createHash } from "node:crypto";
import { closeSync, lstatSync, mkdirSync, openSync, renameSync, rmSync, writeSync } from "node:fs";
import { chmod, constants, copyFile, lstat, mkdir, readdir, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import { Readable } from "node:stream";
import { isSha256 } from "../../domain/artifact.js";
import { TurnoutError } from "../../domain/errors.js";
import { flushFilesystem } from "../../fs/flush-filesystem.js";
import type { BlobSource } from "../../providers/fleet/host-ops.js";
import { ensureRealDir, errorCode, fsyncPath, mapLimit, nonce, raceAbort } from "./fs-util.js";

/**
 * The host's blob cache: `<dir>/<aa>/<sha256>` holds a blob's bytes, verified
 * against its digest before it got that name, read-only (0444).
 *
 * Releases are hard links into this cache, and a hard link shares the inode,
 * so the mode too. Two releases (or two paths of one release) may want the
 * same bytes with different modes, so the cache keeps one inode per
 * (digest, mode): `<sha256>` for 0444 and `<sha256>.<octal mode>` (e.g.
 * `.555`) for the others, each a copy of the verified blob (a reflink where
 * the filesystem can). Modes are the entry's with write, setuid, setgid and
 * sticky bits cleared: a release is never changed after staging, and a
 * writable file would let one release silently change every other release
 * and the cache it shares an inode with.
 */
export const FILE_MODE_MASK = 0o555;

export function cachedFileMode(entryMode: number): number {
  return entryMode & FILE_MODE_MASK;
}

/** fsyncs in flight at once where the filesystem cannot be flushed in one call. */
const SYNC_CONCURRENCY = 32;

/** One request for the blobs of a release: at most this many blobs or bytes, this many requests at once. */
const BATCH_BLOBS = 1000;
const BATCH_BYTES = 128 * 1024 * 1024;
const BATCHES_IN_FLIGHT = 2;

interface Received {
  sha256: string;
  tmp: string;
  bytes: number;
}

interface Wanted {
  sha256: string;
  size: number;
}

async function eachLimit<T>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  let failure: { error: unknown } | undefined;
  const worker = async () => {
    while (!failure && next < items.length) {
      const item = items[next++]!;
      await fn(item).catch((error: unknown) => {
        failure ??= { error };
      });
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  if (failure) throw failure.error;
}

/** Consecutive runs of `files` within the batch limits (a blob larger than the byte limit goes alone). */
export function blobBatches<T extends { size: number }>(files: readonly T[]): T[][] {
  const batches: T[][] = [];
  let current: T[] = [];
  let bytes = 0;
  for (const file of files) {
    if (current.length > 0 && (current.length >= BATCH_BLOBS || bytes + file.size > BATCH_BYTES)) {
      batches.push(current);
      current = [];
      bytes = 0;
    }
    current.push(file);
    bytes += file.size;
  }
  if (current.length > 0) batches.push(current);
  return batches;
}

/** The blobs' bytes back to back: the source's own exchange, or one `open` after another. */
function concatenated(source: BlobSource, digests: string[]): Promise<Readable> {
  return source.openConcatenated
    ? source.openConcatenated(digests)
    : Promise.resolve(oneByOne(source, digests));
}

/**
 * `open` after `open` as one stream. Destroying it destroys the blob being
 * read, so an abort lands even while a source has stopped sending.
 */
function oneByOne(source: BlobSource, digests: readonly string[]): Readable {
  let index = 0;
  let current: Readable | undefined;
  let opening = false;
  const next = async () => {
    if (index >= digests.length) {
      out.push(null);
      return;
    }
    opening = true;
    try {
      const stream = await source.open(digests[index++]!);
      if (out.destroyed) {
        stream.destroy();
        return;
      }
      current = stream;
      stream.on("data", (chunk: Buffer) => {
        if (!out.push(chunk)) stream.pause();
      });
      stream.once("end", () => {
        current = undefined;
        void next();
      });
      stream.once("error", (error) => out.destroy(error));
    } catch (error) {
      out.destroy(error as Error);
    } finally {
      opening = false;
    }
  };
  const out = new Readable({
    read() {
      if (current) current.resume();
      else if (!opening) void next();
    },
    destroy(error, callback) {
      current?.destroy();
      current = undefined;
      callback(error);
    },
  });
  return out;
}

export class BlobCache {
  private readonly tmpDir: string;
  /** Shard directories known to exist (made once, not per blob). */
  private readonly shards = new Set<string>();
  private temps = 0;

  constructor(
    readonly dir: string,
    private readonly fsyncs: boolean,
  ) {
    this.tmpDir = join(dir, "tmp");
  }

  path(sha256: string, mode = 0o444): string {
    if (!isSha256(sha256)) throw new TurnoutError("E_VALIDATION", `not a sha256: ${JSON.stringify(sha256)}`);
    const name = mode === 0o444 ? sha256 : `${sha256}.${mode.toString(8)}`;
    return join(this.dir, sha256.slice(0, 2), name);
  }

  /**
   * Whether a usable copy is there. The size is checked (cheap, and catches a
   * truncated file); the content is trusted, as it was verified on the way in
   * and is read-only since. Synchronous: a release asks this of thousands of
   * blobs, and an lstat costs less than a trip through the thread pool.
   */
  has(sha256: string, size: number, mode = 0o444): boolean {
    try {
      const stat = lstatSync(this.path(sha256, mode));
      return stat.isFile() && stat.size === size;
    } catch (error) {
      if (errorCode(error) === "ENOENT") return false;
      throw error;
    }
  }

  /**
   * Downloads `files` (distinct digests) in a few exchanges, writes each
   * blob to a temp file while hashing it, and names none of them before all
   * arrived and matched their digest and size. Then the data is made durable
   * before the names, and the names before this returns (see commit). On
   * any failure every temp file is removed and nothing is named. Returns the
   * bytes written.
   */
  async fetchAll(files: readonly Wanted[], source: BlobSource, signal: AbortSignal): Promise<number> {
    for (const file of files) this.path(file.sha256); // validates every digest before anything is asked
    if (files.length === 0) return 0;
    await ensureRealDir(this.tmpDir);
    const received: Received[] = [];
    try {
      await mapLimit(
        blobBatches(files),
        BATCHES_IN_FLIGHT,
        async (batch, inner) => {
          const opening = concatenated(
            source,
            batch.map((f) => f.sha256),
          );
          const stream = await raceAbort(opening, inner).catch((error: unknown) => {
            // Aborted before the source answered: close whatever it hands over later.
            opening.then(
              (late) => late.destroy(),
              () => undefined,
            );
            throw error;
          });
          await this.receive(batch, stream, received, inner);
        },
        signal,
      );
      await this.commit(received, signal);
    } catch (error) {
      for (const r of received) rmSync(r.tmp, { force: true });
      throw error;
    }
    return received.reduce((sum, r) => sum + r.bytes, 0);
  }

  /**
   * Splits `stream` into `files` by their sizes, each into a new temp file
   * (read-only from birth: the descriptor that writes it is the only one),
   * hashed on the way; a blob joins `received` only when digest and size
   * match. Writes are synchronous: they go to the page cache, and thousands
   * of small files cost far less that way than through the thread pool.
   */
  private async receive(
    files: readonly Wanted[],
    stream: Readable,
    received: Received[],
    signal: AbortSignal,
  ): Promise<void> {
    const mismatch = (sha256: string, why: string) =>
      new TurnoutError("E_VALIDATION", `blob ${sha256} does not match its digest (${why})`, { sha256 });
    const onAbort = () => stream.destroy(signal.reason as Error);
    let index = 0;
    let fd = -1;
    let tmp = "";
    let written = 0;
    let hash = createHash("sha256");
    const begin = (file: Wanted) => {
      tmp = join(this.tmpDir, `${file.sha256}.${process.pid}-${++this.temps}`);
      fd = openSync(tmp, "wx", 0o444);
      hash = createHash("sha256");
      written = 0;
    };
    const finish = (file: Wanted) => {
      closeSync(fd);
      fd = -1;
      const entry = { sha256: file.sha256, tmp, bytes: written };
      const digest = hash.digest("hex");
      if (digest !== file.sha256) {
        rmSync(tmp, { force: true });
        throw mismatch(file.sha256, `got ${digest.slice(0, 12)}…`);
      }
      received.push(entry);
      index++;
    };
    // Empty blobs take no bytes of the stream: they are done as soon as their turn comes.
    const skipEmpty = () => {
      while (index < files.length && files[index]!.size === 0) {
        begin(files[index]!);
        finish(files[index]!);
      }
    };
    try {
      signal.throwIfAborted();
      signal.addEventListener("abort", onAbort, { once: true });
      skipEmpty();
      for await (const chunk of stream as AsyncIterable<Buffer>) {
        let at = 0;
        while (at < chunk.length) {
          const file = files[index];
          // Stop early rather than fill the disk with more than the manifest promised.
          if (!file) throw mismatch(files[files.length - 1]!.sha256, "more bytes than the manifest says");
          if (fd === -1) begin(file);
          const take = Math.min(chunk.length - at, file.size - written);
          const part = chunk.subarray(at, at + take);
          hash.update(part);
          for (let done = 0; done < part.length; ) done += writeSync(fd, part, done);
          written += take;
          at += take;
          if (written === file.size) {
            finish(file);
            skipEmpty();
          }
        }
      }
      signal.throwIfAborted();
      if (index < files.length) {
        const file = files[index]!;
        if (fd !== -1) throw mismatch(file.sha256, `${written} bytes, the manifest says ${file.size}`);
        throw new TurnoutError(
          "E_UNAVAILABLE",
          `the blob stream ended after ${index} of ${files.length} blobs`,
        );
      }
    } catch (error) {
      stream.destroy();
      if (fd !== -1) {
        closeSync(fd);
        rmSync(tmp, { force: true });
      }
      throw error;
    } finally {
      signal.removeEventListener("abort", onAbort);
    }
  }

  /**
   * Names verified temp files. The data must be on disk before the name is:
   * a crash must not leave a correctly named blob with missing bytes. So the
   * data is flushed first (one syncfs for the whole filesystem, or else every
   * temp file concurrently so the journal commits them together), then the
   * files are renamed, then the renames are flushed the same way.
   */
  private async commit(received: readonly Received[], signal: AbortSignal): Promise<void> {
    if (this.fsyncs && !(await flushFilesystem(this.tmpDir)))
      await eachLimit(received, SYNC_CONCURRENCY, (r) => fsyncPath(r.tmp));
    signal.throwIfAborted();
    const touched = new Set<string>();
    for (const r of received) {
      const final = this.path(r.sha256);
      const shard = final.slice(0, final.lastIndexOf("/"));
      if (!this.shards.has(shard)) {
        mkdirSync(shard, { recursive: true, mode: 0o755 });
        this.shards.add(shard);
      }
      touched.add(shard);
      // A concurrent fetch of the same blob may win the rename: same bytes, no harm.
      renameSync(r.tmp, final);
    }
    if (this.fsyncs && !(await flushFilesystem(this.dir)))
      await eachLimit([...touched], SYNC_CONCURRENCY, fsyncPath);
  }

  /** The (digest, mode) inode, made from the 0444 blob when missing; returns its path. */
  async variant(sha256: string, size: number, mode: number): Promise<string> {
    const path = this.path(sha256, mode);
    if (mode === 0o444 || this.has(sha256, size, mode)) return path;
    await ensureRealDir(this.tmpDir);
    const tmp = join(this.tmpDir, `${sha256}.${nonce()}`);
    try {
      await copyFile(this.path(sha256), tmp, constants.COPYFILE_EXCL | constants.COPYFILE_FICLONE);
      if (this.fsyncs) await fsyncPath(tmp); // before chmod: the new mode may not allow reading
      await chmod(tmp, mode);
      await this.publish(tmp, path);
      return path;
    } catch (error) {
      await rm(tmp, { force: true });
      throw error;
    }
  }

  private async publish(tmp: string, final: string): Promise<void> {
    const shard = final.slice(0, final.lastIndexOf("/"));
    await mkdir(shard, { recursive: true, mode: 0o755 });
    // A concurrent fetch of the same blob may win the rename: same bytes, no harm.
    await rename(tmp, final);
    if (this.fsyncs) await fsyncPath(shard);
  }

  /**
   * Removes blobs no release links any more (link count 1: only the cache's
   * own name), and leftover temp files. The caller makes sure no staging is
   * running, as a blob just fetched has a link count of 1 too.
   */
  async collectGarbage(): Promise<{ removed: number; bytes: number }> {
    let removed = 0;
    let bytes = 0;
    await rm(this.tmpDir, { recursive: true, force: true });
    let shards: string[];
    try {
      shards = await readdir(this.dir);
    } catch (error) {
      if (errorCode(error) === "ENOENT") return { removed, bytes };
      throw error;
    }
    for (const shard of shards) {
      if (!/^[0-9a-f]{2}$/.test(shard)) continue;
      const shardDir = join(this.dir, shard);
      for (const name of await readdir(shardDir).catch(() => [] as string[])) {
        const path = join(shardDir, name);
        const stat = await lstat(path).catch(() => undefined);
        if (stat?.isFile() && stat.nlink === 1) {
          await rm(path, { force: true });
          removed++;
          bytes += stat.size;
        }
      }
    }
    return { removed, bytes };
  }
}
