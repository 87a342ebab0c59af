import { linkSync, lstatSync, mkdirSync, rmSync, type Stats } from "node:fs";
import { chmod, constants, copyFile, lstat, mkdir, readdir, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import { isSha256 } from "../../domain/artifact.js";
import { TurnoutError } from "../../domain/errors.js";
import { flushFilesystem } from "../../fs/flush-filesystem.js";
import { ensureRealDir, errorCode, fsyncPath, mapLimit, nonce } from "./fs-util.js";
import { hashFileSync } from "./hash-file.js";

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
 *
 * Self-repair (the cache is on a host, where people and disks delete and
 * damage things): a name is only used after a check. Every cached name this
 * process verified (hashed on download, or hashed since) is remembered with
 * its inode, size and mtime; a name that has another inode, size or mtime
 * (someone wrote to it, truncated or replaced it), or that this process has
 * not verified yet (the cache of an earlier run), is hashed again before it
 * is used, and a name whose bytes do not match is removed, so the blob is
 * fetched again. Nothing is remembered about directories: a shard (or the
 * whole cache) deleted under a running agent is made again when needed.
 */
export const FILE_MODE_MASK = 0o555;

export function cachedFileMode(entryMode: number): number {
  return entryMode & FILE_MODE_MASK;
}

/** fsyncs in flight at once where the filesystem cannot be flushed in one call. */
const SYNC_CONCURRENCY = 32;
/** Up to this many new blobs, adopt fsyncs each rather than flush the filesystem. */
const FSYNC_EACH_UP_TO = 32;

/** What a cached name looked like when its bytes last matched its digest. */
interface Stamp {
  ino: number;
  size: number;
  mtimeMs: number;
}

function sameStamp(stamp: Stamp | undefined, stat: Stats): boolean {
  return (
    stamp !== undefined &&
    stamp.ino === stat.ino &&
    stamp.size === stat.size &&
    stamp.mtimeMs === stat.mtimeMs
  );
}

export class BlobCache {
  readonly tmpDir: string;
  /** Verified names (cache paths) and how they looked then; see the class comment. */
  private readonly verified = new Map<string, Stamp>();
  /** Names found damaged and removed since the last call of takeRepairs (for the log). */
  private repaired: string[] = [];
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
   * Whether the blob is cached, whole and with its bytes: the plain (0444)
   * name exists as a regular file of `size` bytes, and either this process
   * verified it and it has not changed since (inode, size, mtime), or its
   * bytes hash to its digest now. A damaged name is removed (so the blob is
   * fetched again) and counts as missing.
   */
  has(sha256: string, size: number): boolean {
    return this.check(this.path(sha256), sha256, size);
  }

  /**
   * The inode of the verified (digest, mode) name, if there is one now
   * (checked as in has()); a release file with this inode holds the right
   * bytes. Undefined when there is no good name.
   */
  verifiedInode(sha256: string, size: number, mode = 0o444): number | undefined {
    const path = this.path(sha256, mode);
    return this.check(path, sha256, size) ? this.verified.get(path)?.ino : undefined;
  }

  /** Damaged names removed since the last call, as `<sha256 prefix>` + why (each reported once). */
  takeRepairs(): string[] {
    const out = this.repaired;
    this.repaired = [];
    return out;
  }

  private check(path: string, sha256: string, size: number): boolean {
    let stat: Stats | undefined;
    try {
      stat = lstatSync(path, { throwIfNoEntry: false });
    } catch (error) {
      // A shard that became a file, say: no blob here.
      if (errorCode(error) === "ENOTDIR") return false;
      throw error;
    }
    if (stat === undefined) {
      this.verified.delete(path);
      return false;
    }
    if (sameStamp(this.verified.get(path), stat)) return true;
    let why: string | undefined;
    if (!stat.isFile()) why = "not a file";
    else if (stat.size !== size) why = `${stat.size} bytes, not ${size}`;
    else {
      const digest = hashOrUnreadable(path);
      if (digest !== sha256) why = digest === null ? "unreadable" : "bytes do not match the digest";
    }
    if (why === undefined) {
      this.verified.set(path, { ino: stat.ino, size: stat.size, mtimeMs: stat.mtimeMs });
      return true;
    }
    this.verified.delete(path);
    rmSync(path, { force: true, recursive: !stat.isFile() });
    this.repaired.push(`${sha256.slice(0, 12)} (${why})`);
    return false;
  }

  private remember(path: string): void {
    const stat = lstatSync(path, { throwIfNoEntry: false });
    if (stat?.isFile()) this.verified.set(path, { ino: stat.ino, size: stat.size, mtimeMs: stat.mtimeMs });
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
      try {
        this.link(f.file, name);
        // Hashed on the way in (blob-fetch.ts): these bytes are verified.
        this.remember(name);
      } catch (error) {
        // A concurrent staging named the same blob first: same bytes, no harm
        // (and if not, the next check of that name finds out).
        if (errorCode(error) === "EEXIST") continue;
        // The cache is on another filesystem than the release: it gets a copy of its own.
        if (errorCode(error) !== "EXDEV") throw error;
        await this.copyTo(f.file, name);
        this.remember(name);
        copies++;
      }
    }
    // The plain 0444 inode is always there too (what SSH hosts keep, and what has() looks for first).
    for (const f of files)
      if (f.mode !== 0o444) await this.variant(f.sha256, f.size, 0o444, this.path(f.sha256, f.mode));
    return { copies };
  }

  /**
   * A hard link; the shard directory is made when it is missing (it is not
   * remembered: someone may delete it, or the whole cache, meanwhile).
   */
  private link(file: string, name: string): void {
    try {
      linkSync(file, name);
    } catch (error) {
      if (errorCode(error) !== "ENOENT") throw error;
      mkdirSync(name.slice(0, name.lastIndexOf("/")), { recursive: true, mode: 0o755 });
      linkSync(file, name);
    }
  }

  /**
   * The (digest, mode) inode, checked like has() and copied from `from` (the
   * plain one, which the caller has checked) when missing or damaged; returns its path.
   */
  async variant(sha256: string, size: number, mode: number, from = this.path(sha256)): Promise<string> {
    const path = this.path(sha256, mode);
    if (path === from || this.check(path, sha256, size)) return path;
    await this.copyTo(from, path, mode);
    this.remember(path);
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
          this.verified.delete(path);
          removed++;
          bytes += stat.size;
        }
      }
    }
    return { removed, bytes };
  }
}

/** A variant may have no read bit (mode 0111): it cannot be checked, so it is made again from the plain blob. */
function hashOrUnreadable(path: string): string | null {
  try {
    return hashFileSync(path);
  } catch (error) {
    if (errorCode(error) === "EACCES" || errorCode(error) === "EPERM") return null;
    throw error;
  }
}
