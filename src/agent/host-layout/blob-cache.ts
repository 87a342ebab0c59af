import { createHash } from "node:crypto";
import {
  chmod,
  constants,
  copyFile,
  type FileHandle,
  lstat,
  mkdir,
  open,
  readdir,
  rename,
  rm,
} from "node:fs/promises";
import { join } from "node:path";
import type { Readable } from "node:stream";
import { isSha256 } from "../../domain/artifact.js";
import { TurnoutError } from "../../domain/errors.js";
import type { BlobSource } from "../../providers/fleet/host-ops.js";
import { ensureRealDir, errorCode, fsyncPath, nonce, raceAbort } from "./fs-util.js";

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

/** fsyncs in flight at once when a batch of blobs is made durable. */
const SYNC_CONCURRENCY = 32;

interface Received {
  sha256: string;
  tmp: string;
  bytes: number;
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

export class BlobCache {
  private readonly tmpDir: string;

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
   * and is read-only since.
   */
  async has(sha256: string, size: number, mode = 0o444): Promise<boolean> {
    try {
      const stat = await lstat(this.path(sha256, mode));
      return stat.isFile() && stat.size === size;
    } catch (error) {
      if (errorCode(error) === "ENOENT") return false;
      throw error;
    }
  }

  /**
   * Downloads one blob into a temp file while hashing it, and gives it its
   * name only when digest and size match. Returns the bytes written.
   */
  async fetch(sha256: string, size: number, source: BlobSource, signal: AbortSignal): Promise<number> {
    this.path(sha256); // validates the digest before anything is opened
    await ensureRealDir(this.tmpDir);
    const opening = source.open(sha256);
    const stream = await raceAbort(opening, signal).catch((error: unknown) => {
      // Aborted before the source answered: close whatever it hands over later.
      opening.then(
        (late) => late.destroy(),
        () => undefined,
      );
      throw error;
    });
    const received = await this.receive(sha256, size, stream, signal);
    await this.commit([received], signal);
    return received.bytes;
  }

  /**
   * Many blobs from one `openMany` exchange, each written and verified as
   * `fetch` does; none is named before all of them arrived and matched, and
   * then their data is synced (together) before their renames, and each
   * shard directory once after. On any failure every temp file is removed
   * and no blob of the batch is named. Returns the bytes written.
   */
  async fetchMany(
    files: readonly { sha256: string; size: number }[],
    source: Required<Pick<BlobSource, "openMany">>,
    signal: AbortSignal,
  ): Promise<number> {
    const sizes = new Map<string, number>();
    for (const file of files) {
      this.path(file.sha256); // validates the digest
      sizes.set(file.sha256, file.size);
    }
    await ensureRealDir(this.tmpDir);
    const received: Received[] = [];
    try {
      signal.throwIfAborted();
      for await (const { sha256, stream } of source.openMany([...sizes.keys()])) {
        const size = sizes.get(sha256);
        if (size === undefined) {
          stream.destroy();
          throw new TurnoutError("E_VALIDATION", `blob ${sha256} was not asked for (or came twice)`, {
            sha256,
          });
        }
        sizes.delete(sha256);
        received.push(await this.receive(sha256, size, stream, signal));
      }
      signal.throwIfAborted();
      if (sizes.size > 0) {
        throw new TurnoutError("E_UNAVAILABLE", `${sizes.size} blobs of a batch did not arrive`);
      }
      await this.commit(received, signal);
    } catch (error) {
      await Promise.all(received.map((r) => rm(r.tmp, { force: true })));
      throw error;
    }
    return received.reduce((sum, r) => sum + r.bytes, 0);
  }

  /**
   * Writes `stream` to a new temp file while hashing and counting it; resolves
   * only when digest and size match (the temp file is removed otherwise).
   * Reads the stream to its end (a batch's next blob follows it).
   */
  private async receive(
    sha256: string,
    size: number,
    stream: Readable,
    signal: AbortSignal,
  ): Promise<Received> {
    const tmp = join(this.tmpDir, `${sha256}.${nonce()}`);
    const hash = createHash("sha256");
    let bytes = 0;
    const mismatch = (why: string) =>
      new TurnoutError("E_VALIDATION", `blob ${sha256} does not match its digest (${why})`, { sha256 });
    const onAbort = () => stream.destroy(signal.reason as Error);
    let handle: FileHandle | undefined;
    try {
      signal.throwIfAborted();
      signal.addEventListener("abort", onAbort, { once: true });
      handle = await open(tmp, "wx", 0o600);
      for await (const chunk of stream as AsyncIterable<Buffer>) {
        bytes += chunk.length;
        // Stop early rather than fill the disk with more than the manifest promised.
        if (bytes > size) throw mismatch(`more than the ${size} bytes the manifest says`);
        hash.update(chunk);
        for (let at = 0; at < chunk.length; ) at += (await handle.write(chunk, at)).bytesWritten;
      }
      signal.throwIfAborted();
      const digest = hash.digest("hex");
      if (digest !== sha256) throw mismatch(`got ${digest.slice(0, 12)}…`);
      if (bytes !== size) throw mismatch(`${bytes} bytes, the manifest says ${size}`);
      await handle.close();
      handle = undefined;
      return { sha256, tmp, bytes };
    } catch (error) {
      stream.destroy();
      await handle?.close().catch(() => undefined);
      await rm(tmp, { force: true });
      throw error;
    } finally {
      signal.removeEventListener("abort", onAbort);
    }
  }

  /**
   * Names verified temp files. The data must be on disk before the name is:
   * a crash must not leave a correctly named blob with missing bytes. So all
   * temp files are synced first (concurrently, so the journal commits them
   * together), then renamed, then each shard directory synced once.
   */
  private async commit(received: readonly Received[], signal: AbortSignal): Promise<void> {
    if (this.fsyncs) await eachLimit(received, SYNC_CONCURRENCY, (r) => fsyncPath(r.tmp));
    signal.throwIfAborted();
    const shards = new Set<string>();
    for (const r of received) {
      const final = this.path(r.sha256);
      const shard = final.slice(0, final.lastIndexOf("/"));
      await chmod(r.tmp, 0o444);
      if (!shards.has(shard)) await mkdir(shard, { recursive: true, mode: 0o755 });
      shards.add(shard);
      // A concurrent fetch of the same blob may win the rename: same bytes, no harm.
      await rename(r.tmp, final);
    }
    if (this.fsyncs) await eachLimit([...shards], SYNC_CONCURRENCY, fsyncPath);
  }

  /** The (digest, mode) inode, made from the 0444 blob when missing; returns its path. */
  async variant(sha256: string, size: number, mode: number): Promise<string> {
    const path = this.path(sha256, mode);
    if (mode === 0o444 || (await this.has(sha256, size, mode))) return path;
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
