import {
  type ArtifactEntry,
  type ArtifactManifest,
  assertEntryPath,
  assertManifest,
} from "../../domain/artifact.js";
import { TurnoutError } from "../../domain/errors.js";

/**
 * What staging will write, worked out and checked before anything touches
 * the disk. Beyond the manifest rules (assertManifest: clean paths, links
 * that stay inside the tree), an entry may only live under a real directory
 * of the release: never under a symlink or a file, so that creating it can
 * never follow a link somewhere else.
 */
export type FileEntry = Extract<ArtifactEntry, { type: "file" }>;
export type SymlinkEntry = Extract<ArtifactEntry, { type: "symlink" }>;

export interface ReleasePlan {
  /** Directories to create, parents first, with the mode they end with. */
  dirs: { path: string; mode: number }[];
  files: FileEntry[];
  links: SymlinkEntry[];
  /** Shared paths: each becomes a link to <app>/shared/<path>. */
  shared: string[];
  /** A file the release holds at a shared path: the first content of that shared file. */
  seeds: Map<string, FileEntry>;
  /** Entries left out because a shared path replaces them. */
  dropped: number;
}

/** Directories keep their mode, plus owner rwx: the agent must be able to remove them later. */
export function dirMode(entryMode: number): number {
  return (entryMode & 0o777) | 0o700;
}

export function planRelease(manifest: ArtifactManifest, shared: readonly string[]): ReleasePlan {
  assertManifest(manifest);
  if (!Array.isArray(shared)) throw new TurnoutError("E_VALIDATION", "shared must be a list of paths");
  const sharedSet = new Set<string>();
  for (const path of shared) {
    if (typeof path !== "string") throw new TurnoutError("E_VALIDATION", "shared paths must be strings");
    assertEntryPath(path);
    sharedSet.add(path);
  }
  for (const path of sharedSet) {
    const nested = ancestors(path).find((a) => sharedSet.has(a));
    if (nested) throw new TurnoutError("E_VALIDATION", `shared path ${path} is inside shared path ${nested}`);
  }

  const kinds = new Map<string, ArtifactEntry["type"]>();
  const plan: ReleasePlan = {
    dirs: [],
    files: [],
    links: [],
    shared: [...sharedSet],
    seeds: new Map(),
    dropped: 0,
  };
  // Every path's parents are recorded before the path itself, so a parent
  // known as a directory has all its own parents known too: the walk up stops
  // there, and a release of thousands of files costs a lookup or two per entry.
  const addParents = (path: string) => {
    const missing: string[] = [];
    for (let end = path.lastIndexOf("/"); end > 0; end = path.lastIndexOf("/", end - 1)) {
      const parent = path.slice(0, end);
      const kind = kinds.get(parent);
      if (kind === "dir") break;
      if (kind !== undefined) {
        throw new TurnoutError(
          "E_VALIDATION",
          `artifact path ${path} is inside ${parent}, which is a ${kind}`,
          {
            path,
          },
        );
      }
      missing.push(parent);
    }
    for (let i = missing.length - 1; i >= 0; i--) {
      kinds.set(missing[i]!, "dir");
      plan.dirs.push({ path: missing[i]!, mode: 0o755 });
    }
  };
  const underShared = (path: string) =>
    sharedSet.size > 0 && (sharedSet.has(path) || ancestors(path).some((a) => sharedSet.has(a)));

  const sizes = new Map<string, number>();
  for (const entry of manifest.entries) {
    addParents(entry.path);
    if (entry.type === "file") {
      // One digest, one content: two sizes for it means a forged or broken manifest.
      if ((sizes.get(entry.sha256) ?? entry.size) !== entry.size) {
        throw new TurnoutError("E_VALIDATION", `blob ${entry.sha256} is listed with two sizes`, {
          path: entry.path,
        });
      }
      sizes.set(entry.sha256, entry.size);
    }
    if (kinds.has(entry.path)) {
      throw new TurnoutError("E_VALIDATION", `artifact path ${entry.path} appears twice`, {
        path: entry.path,
      });
    }
    kinds.set(entry.path, entry.type);
    if (underShared(entry.path)) {
      if (entry.type === "file" && sharedSet.has(entry.path)) plan.seeds.set(entry.path, entry);
      // Keep the kind recorded (children must still sit under a directory) but write nothing.
      plan.dropped++;
      continue;
    }
    if (entry.type === "dir") plan.dirs.push({ path: entry.path, mode: dirMode(entry.mode) });
    else if (entry.type === "file") plan.files.push(entry);
    else plan.links.push(entry);
  }

  // A shared link's own parents must be real directories of the release (made if missing).
  for (const path of sharedSet) addParents(path);
  if (sharedSet.size > 0) plan.dirs = plan.dirs.filter((d) => !underShared(d.path));
  return plan;
}

/** "a/b/c" → ["a", "a/b"]. */
export function ancestors(path: string): string[] {
  const parts = path.split("/");
  const out: string[] = [];
  for (let i = 1; i < parts.length; i++) out.push(parts.slice(0, i).join("/"));
  return out;
}

/** The link placed at `path` in a release: relative, through releases/<id>/ up to the app dir. */
export function sharedLinkTarget(path: string): string {
  const depth = path.split("/").length - 1;
  return `${"../".repeat(depth + 2)}shared/${path}`;
}
