import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { isHostReleaseId } from "../../domain/artifact.js";
import type { HostAppInventory } from "../../domain/fleet.js";
import { isValidName } from "../../domain/names.js";
import { readDeployPaths } from "./deploy-paths.js";
import { errorCode, isRealDir } from "./fs-util.js";
import { AppLayout, readPointer } from "./layout.js";
import { readOrder } from "./release-order.js";

/**
 * What a root holds, read without following any symlink: app directories and
 * release directories must be real directories with valid names, pointers
 * are read with readlink. `.turnout` and anything else that is not a valid
 * app name is not an app. Then the layouts at the deploy paths the host has
 * staged to (deploy-paths.ts), each with its path; a directory of the root
 * that is one of those paths is not also an app of its own name.
 */
export async function readInventory(root: string): Promise<HostAppInventory[]> {
  const apps: HostAppInventory[] = [];
  const paths = await readDeployPaths(root);
  const placed = new Set(paths.map((p) => p.path));
  for (const entry of await readdirOrEmpty(root)) {
    if (!entry.isDirectory() || !isValidName(entry.name) || placed.has(join(root, entry.name))) continue;
    apps.push(await readAppInventory(new AppLayout(root, entry.name)));
  }
  for (const { app, path } of paths) {
    const layout = new AppLayout(root, { app, path });
    // Gone (removed by hand) or the default place after all: nothing to report here.
    if (layout.path === undefined || !(await isRealDir(layout.dir))) continue;
    apps.push(await readAppInventory(layout));
  }
  return apps.sort((a, b) =>
    a.app !== b.app ? (a.app < b.app ? -1 : 1) : (a.path ?? "") < (b.path ?? "") ? -1 : 1,
  );
}

/**
 * A pointer counts only while its release is there: a release directory
 * deleted by hand leaves `current` naming nothing, and the host reports no
 * current release, which the server shows as drift (and a reconcile stages
 * the release again).
 */
export async function readAppInventory(layout: AppLayout): Promise<HostAppInventory> {
  const releases = await releasesInOrder(layout);
  const present = new Set(releases);
  const pointed = async (name: string) => {
    const id = await readPointer(layout.pointer(name));
    return id !== null && present.has(id) ? id : null;
  };
  const current = await pointed("current");
  const slots: Record<string, string> = {};
  for (const entry of await readdirOrEmpty(layout.slots)) {
    if (!entry.isSymbolicLink() || !isValidName(entry.name)) continue;
    const id = await pointed(entry.name);
    if (id) slots[entry.name] = id;
  }
  return { app: layout.app, ...(layout.path ? { path: layout.path } : {}), releases, current, slots };
}

/** Release ids on disk, oldest first by staging order; ids missing from the order file count as oldest. */
export async function releasesInOrder(layout: AppLayout): Promise<string[]> {
  if (!(await isRealDir(layout.releases))) return [];
  const onDisk = (await readdirOrEmpty(layout.releases))
    .filter((e) => e.isDirectory() && isHostReleaseId(e.name))
    .map((e) => e.name);
  const present = new Set(onDisk);
  const order = (await readOrder(layout.orderFile)).filter((id) => present.has(id));
  const ordered = new Set(order);
  return [...onDisk.filter((id) => !ordered.has(id)).sort(), ...order];
}

async function readdirOrEmpty(dir: string) {
  try {
    return await readdir(dir, { withFileTypes: true });
  } catch (error) {
    const code = errorCode(error);
    if (code === "ENOENT" || code === "ENOTDIR") return [];
    throw error;
  }
}
