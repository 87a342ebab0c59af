import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { TurnoutError } from "../../domain/errors.js";
import {
  deployPathConflict,
  deployPathProblem,
  deployPathRootProblem,
  rootEntryOf,
} from "../../domain/fleet-rules.js";
import { isValidName } from "../../domain/names.js";
import { ensureRealDir, errorCode, isRealDir } from "./fs-util.js";
import { appendOrder } from "./release-order.js";

/**
 * The deploy paths a host has staged to, kept in `<root>/.turnout/paths`
 * (`<app> <path>`, one pair a line, appended). The inventory reads the apps
 * under the root and the layouts at these paths: nothing else tells the host
 * that /var/www/shop-staging holds releases of `shop`. SSH hosts keep the
 * same file (remote-pointers.ts), so both kinds report the same inventory.
 */
export const PATHS_FILE = ".turnout/paths";

export interface DeployPath {
  app: string;
  path: string;
}

/** The recorded pairs, first occurrence only; lines that break the rules (edited by hand) are skipped. */
export async function readDeployPaths(root: string): Promise<DeployPath[]> {
  let text: string;
  try {
    text = await readFile(join(root, PATHS_FILE), "utf8");
  } catch (error) {
    const code = errorCode(error);
    if (code === "ENOENT" || code === "ENOTDIR") return [];
    throw error;
  }
  const seen = new Set<string>();
  const pairs: DeployPath[] = [];
  for (const line of text.split("\n")) {
    const [app, path, extra] = line.trim().split(" ");
    if (!app || !path || extra !== undefined || !isValidName(app)) continue;
    if (deployPathProblem(path) || deployPathRootProblem(path, root)) continue;
    if (seen.has(line.trim())) continue;
    seen.add(line.trim());
    pairs.push({ app, path });
  }
  return pairs;
}

/**
 * Claims the place of a layout of `app` at `dir` (its deploy path, or
 * `<root>/<app>` when `path` is undefined), reading the recorded paths once:
 * refuses (E_CONFLICT, before anything is written) a place that another
 * app's layout on this host holds, surrounds or sits inside — another app's
 * recorded deploy path, or, for a place under the root, `<root>/<name>`
 * holding app `name`'s releases (unless that is a recorded deploy path
 * itself) — then records a deploy path unless it is there, so the inventory
 * finds it. Callers serialize calls on one root.
 */
export async function claimPlace(
  root: string,
  app: string,
  dir: string,
  path: string | undefined,
  fsyncs: boolean,
): Promise<void> {
  const known = await readDeployPaths(root);
  const others = [...known];
  const entry = rootEntryOf(dir, root);
  if (entry !== undefined && entry !== app) {
    const entryPlace = join(root, entry);
    if (!known.some((p) => p.path === entryPlace) && (await isRealDir(join(entryPlace, "releases"))))
      others.push({ app: entry, path: entryPlace });
  }
  const conflict = deployPathConflict(dir, app, others);
  if (conflict) {
    throw new TurnoutError("E_CONFLICT", `layout refused for app ${app}: ${conflict}`, { app, path: dir });
  }
  if (path === undefined || known.some((p) => p.app === app && p.path === path)) return;
  await ensureRealDir(join(root, ".turnout"));
  // One line per append: the order file's writer does exactly that.
  await appendOrder(join(root, PATHS_FILE), `${app} ${path}`, fsyncs);
}
