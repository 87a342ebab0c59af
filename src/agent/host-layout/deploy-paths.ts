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
 * Refuses (E_CONFLICT, before anything is written) a layout of `app` at
 * `dir` (its deploy path, or `<root>/<app>`) that another app's layout on
 * this host already holds, surrounds or sits inside: another app's recorded
 * deploy path, or, for a deploy path under the root, the default place
 * `<root>/<name>` of an app whose releases are there.
 */
export async function assertPlaceFree(root: string, app: string, dir: string): Promise<void> {
  const known = await readDeployPaths(root);
  const others = known.filter((p) => p.app !== app);
  const entry = rootEntryOf(dir, root);
  const entryPlace = entry === undefined ? undefined : join(root, entry);
  // <root>/<entry> is app <entry>'s default place, unless it is recorded as a deploy path itself.
  if (
    entry !== undefined &&
    entryPlace !== undefined &&
    entry !== app &&
    !known.some((p) => p.path === entryPlace) &&
    (await isRealDir(join(entryPlace, "releases")))
  )
    others.push({ app: entry, path: entryPlace });
  const conflict = deployPathConflict(dir, app, others);
  if (conflict) {
    throw new TurnoutError("E_CONFLICT", `layout refused for app ${app}: ${conflict}`, { app, path: dir });
  }
}

/** Adds the pair unless it is there (callers serialize calls on one root). */
export async function recordDeployPath(
  root: string,
  app: string,
  path: string,
  fsyncs: boolean,
): Promise<void> {
  const known = await readDeployPaths(root);
  if (known.some((p) => p.app === app && p.path === path)) return;
  await ensureRealDir(join(root, ".turnout"));
  // One line per append: the order file's writer does exactly that.
  await appendOrder(join(root, PATHS_FILE), `${app} ${path}`, fsyncs);
}
