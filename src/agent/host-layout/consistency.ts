import { lstat, readdir, readlink } from "node:fs/promises";
import { join } from "node:path";
import { isValidName } from "../../domain/names.js";
import { readDeployPaths } from "./deploy-paths.js";
import { errorCode } from "./fs-util.js";
import { CURRENT, type PointerKind, parsePointerTarget } from "./layout.js";

/**
 * The invariant of the host layout, for tests: every `current` and every
 * slot is a symlink naming `releases/<id>` (or `../releases/<id>`) and that
 * is a complete release directory (only complete releases ever get that
 * name; work in progress lives under `.staging-*`). The same for the
 * layouts at the deploy paths the host recorded. Throws listing every
 * violation.
 */
export async function assertHostConsistent(root: string): Promise<void> {
  const problems: string[] = [];
  const dirs: [label: string, dir: string][] = [];
  for (const app of await list(root)) {
    if (isValidName(app)) dirs.push([app, join(root, app)]);
  }
  for (const { path } of await readDeployPaths(root)) dirs.push([path, path]);
  for (const [app, appDir] of dirs) {
    const stat = await lstat(appDir).catch(() => null);
    if (!stat?.isDirectory()) continue;
    await checkPointer(appDir, join(appDir, CURRENT), "current", `${app}/current`, problems);
    for (const slot of await list(join(appDir, "slots"))) {
      if (slot.startsWith(".")) {
        problems.push(`${app}/slots/${slot}: leftover temporary pointer`);
        continue;
      }
      await checkPointer(appDir, join(appDir, "slots", slot), "slot", `${app}/slots/${slot}`, problems);
    }
  }
  if (problems.length > 0)
    throw new Error(`host layout under ${root} is inconsistent:\n  ${problems.join("\n  ")}`);
}

async function checkPointer(
  appDir: string,
  path: string,
  kind: PointerKind,
  label: string,
  problems: string[],
) {
  let target: string;
  try {
    target = await readlink(path);
  } catch (error) {
    if (errorCode(error) === "ENOENT") return;
    problems.push(`${label} is not a symlink (${errorCode(error)})`);
    return;
  }
  const id = parsePointerTarget(kind, target);
  if (id === null) {
    problems.push(`${label} -> ${target}: not a release`);
    return;
  }
  try {
    if (!(await lstat(join(appDir, "releases", id))).isDirectory())
      problems.push(`${label} -> ${target}: not a directory`);
  } catch {
    problems.push(`${label} -> ${target}: no such release`);
  }
}

async function list(dir: string): Promise<string[]> {
  try {
    return await readdir(dir);
  } catch (error) {
    if (errorCode(error) === "ENOENT" || errorCode(error) === "ENOTDIR") return [];
    throw error;
  }
}
