import {
  type ArtifactEntry,
  type ArtifactManifest,
  assertManifest,
  entryPathProblem,
  linkProblem,
} from "../domain/artifact.js";
import { TurnoutError } from "../domain/errors.js";
import { linkEscapeProblem } from "./link-resolution.js";

export const DIR_MODE = 0o755;

/** Only the executable bit survives: owners, setuid and odd permissions are not the artifact's business. */
export function fileMode(mode: number | undefined): number {
  return (mode ?? 0) & 0o111 ? 0o755 : 0o644;
}

export function refuse(path: string, problem: string): TurnoutError {
  return new TurnoutError("E_VALIDATION", `artifact entry ${JSON.stringify(path)} refused: ${problem}`, {
    path,
    problem,
  });
}

/**
 * Collects the entries of a tree from any source (a directory walk, a tar
 * stream), in any order, and enforces what every artifact must satisfy:
 * clean relative paths, no duplicates, no entry below a file or a symlink
 * (writing `link/x` on a host would write through the link), symlinks that
 * stay inside the tree even when followed through each other. Directories
 * implied by deeper paths are added.
 */
export class TreeBuilder {
  private readonly entries = new Map<string, ArtifactEntry>();
  /** Directories added because something lies below them, not (yet) named themselves. */
  private readonly implied = new Set<string>();

  checkPath(path: string): void {
    const problem = entryPathProblem(path);
    if (problem) throw refuse(path, problem);
  }

  get(path: string): ArtifactEntry | undefined {
    return this.entries.get(path);
  }

  add(entry: ArtifactEntry): void {
    this.checkPath(entry.path);
    if (entry.type === "symlink") {
      const problem = linkProblem(entry.path, entry.target);
      if (problem) throw refuse(entry.path, problem);
    }
    const existing = this.entries.get(entry.path);
    if (existing) {
      if (existing.type === "dir" && entry.type === "dir" && this.implied.delete(entry.path)) {
        this.entries.set(entry.path, entry);
        return;
      }
      const what =
        existing.type === entry.type
          ? "it appears twice"
          : `it is both a ${existing.type} and a ${entry.type}`;
      throw refuse(entry.path, what);
    }
    this.addParents(entry.path);
    this.entries.set(entry.path, entry);
  }

  private addParents(path: string): void {
    let slash = path.indexOf("/");
    while (slash !== -1) {
      const parent = path.slice(0, slash);
      const existing = this.entries.get(parent);
      if (!existing) {
        this.entries.set(parent, { path: parent, type: "dir", mode: DIR_MODE });
        this.implied.add(parent);
      } else if (existing.type !== "dir") {
        throw refuse(path, `it lies below ${JSON.stringify(parent)}, which is a ${existing.type}`);
      }
      slash = path.indexOf("/", slash + 1);
    }
  }

  /** Sorted in JS string order, the order assertManifest checks (parents sort before their children). */
  finish(): ArtifactManifest {
    for (const entry of this.entries.values()) {
      if (entry.type !== "symlink") continue;
      const problem = linkEscapeProblem(this.entries, entry.path);
      if (problem) throw refuse(entry.path, problem);
    }
    const entries = [...this.entries.values()].sort((a, b) =>
      a.path < b.path ? -1 : a.path > b.path ? 1 : 0,
    );
    return assertManifest({ version: 1, entries });
  }
}

export function summarize(manifest: ArtifactManifest): { files: number; bytes: number } {
  let files = 0;
  let bytes = 0;
  for (const entry of manifest.entries) {
    if (entry.type !== "file") continue;
    files++;
    bytes += entry.size;
  }
  return { files, bytes };
}
