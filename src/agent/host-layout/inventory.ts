import { readdir } from "node:fs/promises";
import { isHostReleaseId } from "../../domain/artifact.js";
import type { HostAppInventory } from "../../domain/fleet.js";
import { isValidName } from "../../domain/names.js";
import { errorCode, isRealDir } from "./fs-util.js";
import { AppLayout, readPointer } from "./layout.js";
import { readOrder } from "./release-order.js";

/**
 * What a root holds, read without following any symlink: app directories and
 * release directories must be real directories with valid names, pointers
 * are read with readlink. `.turnout` and anything else that is not a valid
 * app name is not an app.
 */
export async function readInventory(root: string): Promise<HostAppInventory[]> {
  const apps: HostAppInventory[] = [];
  for (const entry of await readdirOrEmpty(root)) {
    if (!entry.isDirectory() || !isValidName(entry.name)) continue;
    apps.push(await readAppInventory(new AppLayout(root, entry.name)));
  }
  return apps.sort((a, b) => (a.app < b.app ? -1 : 1));
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
  return { app: layout.app, releases, current, slots };
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
