import { readdir } from "node:fs/promises";
import path from "node:path";

/**
 * git's own thresholds for `gc --auto` (its defaults: gc.auto = 6700 loose
 * objects, gc.autoPackLimit = 50 packs). Turnout's mirrors set neither.
 */
export const GIT_GC_DEFAULTS = { looseObjects: 6700, packs: 50 } as const;

/**
 * Whether `git maintenance run --auto` would do anything in a mirror: the
 * test git makes for its one default task (gc), made here without a process.
 * Most fetches bring a handful of objects and leave it with nothing to do,
 * and starting git to find that out is a process on every deploy of a new
 * commit. Like git, it estimates the loose objects from one of the 256
 * fan-out directories (objects/17) and counts the packs that have no .keep.
 */
export async function maintenanceDue(
  gitDir: string,
  limits: { looseObjects: number; packs: number } = GIT_GC_DEFAULTS,
): Promise<boolean> {
  const objects = path.join(gitDir, "objects");
  const perDirectory = Math.ceil(limits.looseObjects / 256);
  const sample = await namesIn(path.join(objects, "17"));
  if (sample.filter((name) => /^[0-9a-f]{38}$/.test(name)).length > perDirectory) return true;
  const packFiles = await namesIn(path.join(objects, "pack"));
  const kept = new Set(packFiles.filter((name) => name.endsWith(".keep")).map((name) => name.slice(0, -5)));
  const packs = packFiles.filter((name) => name.endsWith(".pack") && !kept.has(name.slice(0, -5)));
  return packs.length > limits.packs;
}

async function namesIn(dir: string): Promise<string[]> {
  return readdir(dir).catch(() => [] as string[]);
}
