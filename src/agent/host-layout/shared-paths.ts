import { chmod, constants, copyFile, lstat, mkdir } from "node:fs/promises";
import { dirname, join } from "node:path";
import type { HostLog } from "../../providers/fleet/host-ops.js";
import type { BlobCache } from "./blob-cache.js";
import { errorCode } from "./fs-util.js";
import type { FileEntry, ReleasePlan } from "./release-plan.js";

/**
 * `<root>/<app>/shared/<path>`: state that outlives releases. Each release
 * links there instead of carrying its own copy. A missing shared path is
 * created: as a copy of the release's file when the release has a file at
 * that path (a default config, say), as an empty directory otherwise. An
 * existing one is never touched: it is the app's data.
 */

/** Shared paths not there yet, with the file (if any) that will seed each. */
export async function missingShared(
  sharedDir: string,
  plan: ReleasePlan,
): Promise<{ path: string; seed: FileEntry | undefined }[]> {
  const missing: { path: string; seed: FileEntry | undefined }[] = [];
  for (const path of plan.shared) {
    try {
      await lstat(join(sharedDir, path));
    } catch (error) {
      if (errorCode(error) !== "ENOENT" && errorCode(error) !== "ENOTDIR") throw error;
      missing.push({ path, seed: plan.seeds.get(path) });
    }
  }
  return missing;
}

export async function createShared(
  sharedDir: string,
  missing: readonly { path: string; seed: FileEntry | undefined }[],
  cache: BlobCache,
  log: HostLog,
): Promise<void> {
  for (const { path, seed } of missing) {
    const target = join(sharedDir, path);
    await mkdir(dirname(target), { recursive: true, mode: 0o755 });
    try {
      if (seed) {
        // A copy, not a link: shared files are written to, the cache must never be.
        await copyFile(cache.path(seed.sha256), target, constants.COPYFILE_EXCL);
        await chmod(target, (seed.mode & 0o777) | 0o600);
        log(`shared: created ${path} from the release's copy`);
      } else {
        await mkdir(target, { mode: 0o755 });
        log(`shared: created directory ${path}`);
      }
    } catch (error) {
      // Another staging of the same app created it meanwhile: that one stands.
      if (errorCode(error) !== "EEXIST") throw error;
    }
  }
}
