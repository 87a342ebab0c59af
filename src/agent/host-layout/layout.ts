import { readlink } from "node:fs/promises";
import { join } from "node:path";
import { isHostReleaseId } from "../../domain/artifact.js";
import { TurnoutError } from "../../domain/errors.js";
import { assertName } from "../../domain/names.js";
import { errorCode } from "./fs-util.js";

/**
 * Paths of one app under the agent root (DESIGN.md "Hosts and fleets"):
 *
 *   <root>/<app>/releases/<id>/     complete releases only
 *   <root>/<app>/releases/.staging-<id>-<nonce>/   work in progress, swept when stale
 *   <root>/<app>/current -> releases/<id>
 *   <root>/<app>/slots/<name> -> ../releases/<id>
 *   <root>/<app>/shared/
 *   <root>/<app>/.releases          staging order, oldest first, one id a line
 *
 * Every name is validated here, so nothing built from a request can leave the root.
 */
export const CURRENT = "current";
export const STAGING_PREFIX = ".staging-";
export const REMOVING_PREFIX = ".removing-";
export const ORDER_FILE = ".releases";

export type PointerKind = "current" | "slot";

export interface Pointer {
  kind: PointerKind;
  name: string;
  path: string;
}

export class AppLayout {
  readonly app: string;
  readonly dir: string;
  readonly releases: string;
  readonly slots: string;
  readonly shared: string;
  readonly orderFile: string;

  constructor(
    readonly root: string,
    app: string,
  ) {
    this.app = assertName("app", app);
    this.dir = join(root, this.app);
    this.releases = join(this.dir, "releases");
    this.slots = join(this.dir, "slots");
    this.shared = join(this.dir, "shared");
    this.orderFile = join(this.dir, ORDER_FILE);
  }

  release(id: string): string {
    return join(this.releases, assertReleaseId(id));
  }

  /** "current" or a slot name → the link's path. */
  pointer(slot: string): Pointer {
    if (slot === CURRENT) return { kind: "current", name: CURRENT, path: join(this.dir, CURRENT) };
    const name = assertName("slot", slot);
    return { kind: "slot", name, path: join(this.slots, name) };
  }
}

export function assertReleaseId(id: unknown): string {
  if (typeof id !== "string" || !isHostReleaseId(id)) {
    throw new TurnoutError(
      "E_VALIDATION",
      `invalid release id ${JSON.stringify(id)}: expected 16 hex digits`,
      {
        releaseId: String(id),
      },
    );
  }
  return id;
}

/** What a pointer's symlink must say: relative, so the whole root can move. */
export function pointerTarget(kind: PointerKind, id: string): string {
  return kind === "current" ? `releases/${id}` : `../releases/${id}`;
}

/** The release id a pointer's target names, or null when it is not one we wrote. */
export function parsePointerTarget(kind: PointerKind, target: string): string | null {
  const prefix = kind === "current" ? "releases/" : "../releases/";
  if (!target.startsWith(prefix)) return null;
  const id = target.slice(prefix.length);
  return isHostReleaseId(id) ? id : null;
}

/**
 * Where a pointer points: only its own text is read (readlink, never
 * following it), so a planted link cannot make us read outside the root.
 * null when the pointer does not exist or is not a link of ours.
 */
export async function readPointer(pointer: Pick<Pointer, "kind" | "path">): Promise<string | null> {
  try {
    return parsePointerTarget(pointer.kind, await readlink(pointer.path));
  } catch (error) {
    const code = errorCode(error);
    if (code === "ENOENT" || code === "EINVAL" || code === "ENOTDIR") return null;
    throw error;
  }
}
