import { execFile } from "node:child_process";

/**
 * Makes everything written to the filesystem holding `path` durable, with one
 * syncfs(2) instead of one fsync per file: staging a release writes thousands
 * of files, and flushing them one by one costs more than writing them.
 * Node has no syncfs binding, so this runs coreutils' `sync --file-system`
 * (argv, no shell). Resolves false where that is not available (BusyBox,
 * no coreutils): the caller then fsyncs file by file, as before.
 *
 * The order of durability is the caller's: data flushed here before the
 * renames that give it its names, those renames flushed before anything
 * points at them.
 */
let supported: boolean | undefined;

export function flushFilesystem(path: string): Promise<boolean> {
  if (supported === false) return Promise.resolve(false);
  return new Promise((resolve) => {
    execFile("sync", ["--file-system", "--", path], { timeout: 10 * 60_000 }, (error) => {
      if (error) {
        // A missing binary will not appear; anything else (an old sync without
        // --file-system, EIO) is left to the per-file fallback to report.
        if ((error as NodeJS.ErrnoException).code === "ENOENT") supported = false;
        resolve(false);
        return;
      }
      supported = true;
      resolve(true);
    });
  });
}
