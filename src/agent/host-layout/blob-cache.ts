import { existsSync, linkSync, mkdirSync } from "node:fs";
import { chmod, constants, copyFile, lstat, mkdir, readdir, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import { isSha256 } from "../../domain/artifact.js";
import { TurnoutError } from "../../domain/errors.js";
import { flushFilesystem } from "../../fs/flush-filesystem.js";
import { ensureRealDir, errorCode, fsyncPath, mapLimit, nonce } from "./fs-util.js";

/**
 * The host's blob cache: `<dir>/<aa>/<sha256>` holds a blob's bytes, verified
 * against its digest before it got that name, read-only (0444). A blob is
 * downloaded straight into the release being staged (blob-fetch.ts) and then
 * adopted: the cache's name is a hard link to that file, made once its data
 * is durable.
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
/** Up to this many new blobs, adopt fsyncs each rather than flush the filesystem. */
const FSYNC_EACH_UP_TO = 32;

export class BlobCache {
  readonly tmpDir: string;
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
    // Concatenated, not path.join: the parts are already clean, and this runs per file of a release.
    return `${this.dir}/${sha256.slice(0, 2)}/${name}`;
  }

  /**
   * Whether the blob is cached. Every cached blob has its plain (0444)
   * inode, and a name is only ever given to bytes that matched their digest
   * and were flushed, read-only since: the name is trusted. existsSync, not
   * lstat: a release asks this of thousands of blobs, and building a Stats
   * object for each cost more than the call.
   */
  has(sha256: string): boolean {
    return existsSync(this.path(sha256));
  }

  /** A fresh name for a blob no path of the release holds (a shared file's seed); adopt links it, then it goes. */
  tempFile(sha256: string): string {
    return join(this.tmpDir, `${this.path(sha256).slice(-64)}.${process.pid}-${++this.temps}`);
  }

  /**
   * Names verified files in the cache, as hard links to them (the files stay
   * where they are, in a staging tree). The data must be on disk before the
   * name is: a crash must not leave a correctly named blob with missing
   * bytes. So the data is flushed first (a few files each on its own, many
   * with one syncfs for the filesystem, or else every file, concurrently),
   * then the links are made. They need no flush of their own: a lost name
   * only means the blob is fetched again, and the release's flush before
   * it is published covers them anyway.
   */
  async adopt(
    files: readonly { sha256: string; size: number; file: string; mode: number }[],
    signal: AbortSignal,
  ): Promise<{ copies: number }> {
    let copies = 0;
    if (files.length === 0) return { copies };
    if (this.fsyncs) {
      // A few files: each flushed on its own. Many: one flush of the whole
      // filesystem, far cheaper than thousands of fsyncs, but it forks a
      // process and waits for everything dirty there, other stagings' too.
      const flushed = files.length > FSYNC_EACH_UP_TO && (await flushFilesystem(this.dir));
      if (!flushed) await mapLimit(files, SYNC_CONCURRENCY, (f) => fsyncPath(f.file), signal);
    }
    signal.throwIfAborted();
    for (const f of files) {
      const name = this.path(f.sha256, f.mode);
      const shard = name.slice(0, name.lastIndexOf("/"));
      if (!this.shards.has(shard)) {
        mkdirSync(shard, { recursive: true, mode: 0o755 });
        this.shards.add(shard);
      }
      try {
        linkSync(f.file, name);
      } catch (error) {
        // A concurrent staging named the same blob first: same bytes, no harm.
        if (errorCode(error) === "EEXIST") continue;
        // The cache is on another filesystem than the release: it gets a copy of its own.
        if (errorCode(error) !== "EXDEV") throw error;
        await this.copyTo(f.file, name);
        copies++;
      }
    }
    // The plain 0444 inode is always there too (what SSH hosts keep, and what has() looks for first).
    for (const f of files)
      if (f.mode !== 0o444) await this.variant(f.sha256, 0o444, this.path(f.sha256, f.mode));
    return { copies };
  }

  /** The (digest, mode) inode, copied from `from` (the plain one) when missing; returns its path. */
  async variant(sha256: string, mode: number, from = this.path(sha256)): Promise<string> {
    const path = this.path(sha256, mode);
    if (path === from || existsSync(path)) return path;
    await this.copyTo(from, path, mode);
    return path;
  }

  /**
   * A durable copy of `from` under the cache name `name` (with `mode`, else
   * the source's), through a temp file: a name is only given to whole bytes.
   */
  private async copyTo(from: string, name: string, mode?: number): Promise<void> {
    await ensureRealDir(this.tmpDir);
    const tmp = join(this.tmpDir, `${name.slice(name.lastIndexOf("/") + 1)}.${nonce()}`);
    try {
      await copyFile(from, tmp, constants.COPYFILE_EXCL | constants.COPYFILE_FICLONE);
      if (this.fsyncs) await fsyncPath(tmp); // before chmod: the new mode may not allow reading
      if (mode !== undefined) await chmod(tmp, mode);
      await this.publish(tmp, name);
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
