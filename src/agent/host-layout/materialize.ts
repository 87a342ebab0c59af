import { chmodSync, copyFileSync, linkSync, mkdirSync, symlinkSync } from "node:fs";
import { lstat, open, readdir } from "node:fs/promises";
import { join } from "node:path";
import { flushFilesystem } from "../../fs/flush-filesystem.js";
import type { BlobCache } from "./blob-cache.js";
import { cachedFileMode } from "./blob-cache.js";
import { errorCode, fsyncPath, mapLimit } from "./fs-util.js";
import { type ReleasePlan, sharedLinkTarget } from "./release-plan.js";

/**
 * Writes a planned release into its (fresh, private) staging directory:
 * directories, hard links from the blob cache, symlinks, links to shared/.
 * Every create is exclusive (mkdir, link and symlink fail on an existing
 * name) and every parent is a directory we just made, so nothing here can
 * follow a link or overwrite anything.
 *
 * The calls are synchronous: a release is thousands of links and mkdirs of
 * a few microseconds each, and a trip through libuv's thread pool per call
 * cost several times the call itself. The abort signal is looked at every
 * few hundred entries, so a cancel still lands within milliseconds.
 */
const FS_CONCURRENCY = 16;
const CHECK_EVERY = 256;

export interface MaterializeResult {
  /** Files that had to be copied because the cache cannot be hard-linked from here. */
  copied: number;
}

/** The staging directory and every directory of the release, owner-only while being built. */
export function createDirectories(plan: ReleasePlan, staging: string): void {
  mkdirSync(staging, { mode: 0o700 });
  for (const dir of plan.dirs) mkdirSync(join(staging, dir.path), { mode: 0o700 });
}

/**
 * Everything but the directories (createDirectories) and the files already
 * written in place by the download (`written`, paths of the release): links
 * from the cache, symlinks, shared links, then the final modes.
 */
export async function materialize(
  plan: ReleasePlan,
  staging: string,
  cache: BlobCache,
  written: ReadonlySet<string>,
  signal: AbortSignal,
): Promise<MaterializeResult> {
  signal.throwIfAborted();

  // One inode per (digest, mode) in the cache: the plain one is always there
  // (adopted or found by staging); another mode's is made the first time it is wanted.
  const sources = new Map<string, string>();
  let copied = 0;
  let count = 0;
  for (const file of plan.files) {
    if (++count % CHECK_EVERY === 0) signal.throwIfAborted();
    if (written.has(file.path)) continue;
    const mode = cachedFileMode(file.mode);
    const key = mode === 0o444 ? file.sha256 : `${file.sha256}.${mode}`;
    let source = sources.get(key);
    if (source === undefined) {
      source = mode === 0o444 ? cache.path(file.sha256) : await cache.variant(file.sha256, file.size, mode);
      sources.set(key, source);
    }
    // Concatenated, not path.join: plan paths are checked clean, and this runs per file.
    const dest = `${staging}/${file.path}`;
    try {
      linkSync(source, dest);
    } catch (error) {
      // EXDEV: the cache is on another filesystem; EMLINK: the inode has
      // reached its link limit. A private copy is correct, only bigger.
      if (errorCode(error) !== "EXDEV" && errorCode(error) !== "EMLINK") throw error;
      copyFileSync(source, dest, 0);
      chmodSync(dest, mode);
      copied++;
    }
  }

  for (const entry of plan.links) symlinkSync(entry.target, join(staging, entry.path));
  for (const path of plan.shared) symlinkSync(sharedLinkTarget(path), join(staging, path));

  // Modes without owner write are impossible here (dirMode adds it), so any order works.
  for (const dir of plan.dirs) chmodSync(join(staging, dir.path), dir.mode);
  chmodSync(staging, 0o755);
  signal.throwIfAborted();
  return { copied };
}

/**
 * Makes the staged tree durable before it is renamed into place: one flush
 * of the filesystem where it can be had. Otherwise file by file: linked files
 * are cache blobs, synced when they were fetched; what is new here is
 * directory entries, plus whatever a before_switch hook wrote (`walkHookFiles`:
 * regular files with a single link are not cache blobs, so they get synced too).
 */
export async function syncTree(
  staging: string,
  plan: ReleasePlan,
  walkHookFiles: boolean,
  signal: AbortSignal,
): Promise<void> {
  if (await flushFilesystem(staging)) return;
  if (!walkHookFiles) {
    const dirs = [...plan.dirs.map((d) => join(staging, d.path)), staging];
    await mapLimit(dirs, FS_CONCURRENCY, (dir) => fsyncPath(dir), signal);
    return;
  }
  const paths: string[] = [];
  const walk = async (dir: string) => {
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) await walk(path);
      else if (entry.isFile() && (await lstat(path)).nlink === 1) paths.push(path);
    }
    paths.push(dir);
  };
  await walk(staging);
  await mapLimit(
    paths,
    FS_CONCURRENCY,
    async (path) => {
      try {
        const handle = await open(path, "r");
        try {
          await handle.sync();
        } finally {
          await handle.close();
        }
      } catch (error) {
        // A hook may leave something we cannot open (mode 000): its problem, not a reason to fail.
        if (errorCode(error) !== "EACCES" && errorCode(error) !== "EPERM") throw error;
      }
    },
    signal,
  );
}
