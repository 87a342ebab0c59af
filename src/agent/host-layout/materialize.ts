import { chmod, copyFile, link, lstat, mkdir, open, readdir, symlink } from "node:fs/promises";
import { join } from "node:path";
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
 */
const FS_CONCURRENCY = 16;

export interface MaterializeResult {
  /** Files that had to be copied because the cache cannot be hard-linked from here. */
  copied: number;
}

export async function materialize(
  plan: ReleasePlan,
  staging: string,
  cache: BlobCache,
  signal: AbortSignal,
): Promise<MaterializeResult> {
  // Owner-only while being built; final modes are set once everything is in.
  for (const dir of plan.dirs) {
    signal.throwIfAborted();
    await mkdir(join(staging, dir.path), { mode: 0o700 });
  }

  // One inode per (digest, mode) in the cache; make the missing variants first.
  const variants = new Map<string, { sha256: string; size: number; mode: number }>();
  for (const file of plan.files) {
    const mode = cachedFileMode(file.mode);
    variants.set(`${file.sha256}.${mode}`, { sha256: file.sha256, size: file.size, mode });
  }
  const sources = new Map<string, string>();
  await mapLimit(
    [...variants.entries()],
    FS_CONCURRENCY,
    async ([key, v]) => {
      sources.set(key, await cache.variant(v.sha256, v.size, v.mode));
    },
    signal,
  );

  let copied = 0;
  await mapLimit(
    plan.files,
    FS_CONCURRENCY,
    async (file) => {
      const mode = cachedFileMode(file.mode);
      const source = sources.get(`${file.sha256}.${mode}`)!;
      const dest = join(staging, file.path);
      try {
        await link(source, dest);
      } catch (error) {
        // EXDEV: the cache is on another filesystem; EMLINK: the inode has
        // reached its link limit. A private copy is correct, only bigger.
        if (errorCode(error) !== "EXDEV" && errorCode(error) !== "EMLINK") throw error;
        await copyFile(source, dest, 0);
        await chmod(dest, mode);
        copied++;
      }
    },
    signal,
  );

  await mapLimit(
    plan.links,
    FS_CONCURRENCY,
    (entry) => symlink(entry.target, join(staging, entry.path)),
    signal,
  );
  for (const path of plan.shared) await symlink(sharedLinkTarget(path), join(staging, path));

  // Deepest first does not matter for chmod, but modes without owner write
  // are impossible here (dirMode adds it), so any order works.
  for (const dir of plan.dirs) await chmod(join(staging, dir.path), dir.mode);
  await chmod(staging, 0o755);
  return { copied };
}

/**
 * Makes the staged tree durable before it is renamed into place. Linked
 * files are cache blobs, synced when they were fetched; what is new here is
 * directory entries, plus whatever a before_switch hook wrote (`walkHookFiles`:
 * regular files with a single link are not cache blobs, so they get synced too).
 */
export async function syncTree(
  staging: string,
  plan: ReleasePlan,
  walkHookFiles: boolean,
  signal: AbortSignal,
): Promise<void> {
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
