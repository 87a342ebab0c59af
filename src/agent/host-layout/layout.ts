import { readlink } from "node:fs/promises";
import { join } from "node:path";
import { isHostReleaseId } from "../../domain/artifact.js";
import { TurnoutError } from "../../domain/errors.js";
import { type AppTarget, targetApp, targetPath } from "../../domain/fleet.js";
import { deployPathProblem, deployPathRootProblem } from "../../domain/fleet-rules.js";
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
 * An environment with its own deploy path has the same layout at <path>/
 * instead of <root>/<app>/ (the cache stays in <root>/.turnout).
 *
 * Every name is validated here, so nothing built from a request can leave the
 * root (or the deploy path, which is checked too).
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
  /** The deploy path, when the layout is not <root>/<app> (a path equal to <root>/<app> counts as none). */
  readonly path: string | undefined;
  readonly dir: string;
  readonly releases: string;
  readonly slots: string;
  readonly shared: string;
  readonly orderFile: string;

  constructor(
    readonly root: string,
    target: AppTarget,
  ) {
    this.app = assertName("app", targetApp(target));
    const path = targetPath(target);
    if (path !== undefined) assertDeployPath(path, root);
    this.path = path === undefined || path === join(root, this.app) ? undefined : path;
    this.dir = this.path ?? join(root, this.app);
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

/** A deploy path the host accepts: the rules of the manifest, and not the root or inside its state. */
export function assertDeployPath(path: unknown, root: string): string {
  const problem =
    typeof path !== "string"
      ? "not a string"
      : (deployPathProblem(path) ?? deployPathRootProblem(path, root));
  if (problem) {
    throw new TurnoutError("E_VALIDATION", `invalid deploy path ${JSON.stringify(path)}: ${problem}`, {
      path: String(path),
    });
  }
  return path as string;
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
