import { createHash } from "node:crypto";
import { createWriteStream } from "node:fs";
import { chmod, constants, copyFile, lstat, mkdir, readdir, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import { Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
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
    const final = this.path(sha256);
    await ensureRealDir(this.tmpDir);
    const tmp = join(this.tmpDir, `${sha256}.${nonce()}`);
    const hash = createHash("sha256");
    let bytes = 0;
    const mismatch = (why: string) =>
      new TurnoutError("E_VALIDATION", `blob ${sha256} does not match its digest (${why})`, { sha256 });
    try {
      const opening = source.open(sha256);
      const stream = await raceAbort(opening, signal).catch((error: unknown) => {
        // Aborted before the source answered: close whatever it hands over later.
        opening.then(
          (late) => late.destroy(),
          () => undefined,
        );
        throw error;
      });
      const verify = new Transform({
        transform(chunk: Buffer, _encoding, callback) {
          bytes += chunk.length;
          // Stop early rather than fill the disk with more than the manifest promised.
          if (bytes > size) return callback(mismatch(`more than the ${size} bytes the manifest says`));
          hash.update(chunk);
          callback(null, chunk);
        },
      });
      await pipeline(stream, verify, createWriteStream(tmp, { flags: "wx", mode: 0o600 }), { signal });
      const digest = hash.digest("hex");
      if (digest !== sha256) throw mismatch(`got ${digest.slice(0, 12)}…`);
      if (bytes !== size) throw mismatch(`${bytes} bytes, the manifest says ${size}`);
      // The data must be on disk before the name is: a crash must not leave a
      // correctly named blob with missing bytes.
      if (this.fsyncs) await fsyncPath(tmp);
      await chmod(tmp, 0o444);
      await this.publish(tmp, final);
      return bytes;
    } catch (error) {
      await rm(tmp, { force: true });
      throw error;
    }
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
