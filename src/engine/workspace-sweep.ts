import { readdir, rm } from "node:fs/promises";
import path from "node:path";

/**
 * Removes from `<dataDir>/workspaces/` every entry that is not the workspace
 * of a deploy this process is running now (`isRunning(name)`), and resolves
 * with the names removed.
 *
 * A deploy removes its own workspace when it ends, but a process killed
 * mid-deploy cannot: without a sweep, every crash leaves a checkout behind
 * for good. Only the running set is trusted, never ages or the database: the
 * data directory is this server's own (several servers sharing PostgreSQL
 * each have theirs), so anything here that this process is not running is
 * left over. The check is made per entry, right before removing it, and a
 * deploy is in the running set before its workspace exists and until it has
 * removed it, so a sweep never takes a workspace from under a deploy.
 */
export async function sweepWorkspaces(dir: string, isRunning: (name: string) => boolean): Promise<string[]> {
  let entries: string[];
  try {
    entries = await readdir(dir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw error;
  }
  const removed: string[] = [];
  for (const name of entries) {
    if (isRunning(name)) continue;
    await rm(path.join(dir, name), { recursive: true, force: true, maxRetries: 2 });
    removed.push(name);
  }
  return removed;
}
