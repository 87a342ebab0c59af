import { createHash } from "node:crypto";
import { notFound, TurnoutError } from "./errors.js";

/**
 * An artifact is the built form of a release: a manifest of entries plus
 * blobs stored once by their sha256. Hosts download only the blobs they lack
 * and materialize the tree with hard links from their cache.
 *
 * Paths are relative, `/`-separated, normalized (no `.`, `..` or empty
 * components), and nothing may point outside the tree: these rules are
 * checked when an artifact is made, when one is uploaded, and again on every
 * host before anything is written.
 */
export type ArtifactEntry =
  | { path: string; type: "dir"; mode: number }
  | { path: string; type: "file"; mode: number; size: number; sha256: string }
  | { path: string; type: "symlink"; target: string };

export interface ArtifactManifest {
  version: 1;
  /** Sorted by path (byte order), parents before children. */
  entries: ArtifactEntry[];
}

/** What the server knows of an artifact without reading its manifest. */
export interface ArtifactInfo {
  digest: string;
  app: string;
  files: number;
  bytes: number;
  source: "built" | "uploaded";
  fingerprint: string | null;
  createdAt: string;
}

const SHA256 = /^[0-9a-f]{64}$/;
/**
 * What a host's filesystem can hold, in bytes: a name is at most 255 bytes
 * (NAME_MAX), a symlink's target at most 4095 (PATH_MAX less its NUL), and a
 * whole path too, so an entry's path keeps 1 KiB of that for the release
 * directory it is written below. Longer ones would be taken here and fail on
 * every host (ENAMETOOLONG).
 */
const MAX_NAME_BYTES = 255;
const MAX_PATH_BYTES = 3072;
const MAX_TARGET_BYTES = 4095;

export function isSha256(value: string): boolean {
  return SHA256.test(value);
}

/** The answer for an artifact that is not stored, or that belongs to an app the caller may not see. */
export function artifactNotFound(digest: string): TurnoutError {
  return notFound(`artifact ${digest}`, { digest });
}

/** Throws E_VALIDATION unless `path` is a clean relative path inside the tree. */
export function assertEntryPath(path: string): string {
  const problem = entryPathProblem(path);
  if (problem)
    throw new TurnoutError("E_VALIDATION", `unsafe artifact path ${JSON.stringify(path)}: ${problem}`, {
      path,
    });
  return path;
}

export function entryPathProblem(path: string): string | undefined {
  if (path.length === 0) return "it is empty";
  if (Buffer.byteLength(path) > MAX_PATH_BYTES) return `it is longer than ${MAX_PATH_BYTES} bytes`;
  if (path.startsWith("/")) return "it is absolute";
  if (/[\u0000-\u001f\u007f\\]/.test(path)) return "it contains control characters or backslashes";
  for (const part of path.split("/")) {
    if (part === "" || part === "." || part === "..") return "it has an empty, '.' or '..' component";
    if (Buffer.byteLength(part) > MAX_NAME_BYTES) return `it has a name longer than ${MAX_NAME_BYTES} bytes`;
  }
  return undefined;
}

/**
 * Whether a symlink at `path` pointing to `target` stays inside the tree
 * (relative targets only, resolved against the link's directory).
 */
export function linkProblem(path: string, target: string): string | undefined {
  if (target.length === 0) return "its target is empty";
  if (target.startsWith("/")) return "its target is absolute";
  if (/[\u0000]/.test(target)) return "its target contains NUL";
  if (Buffer.byteLength(target) > MAX_TARGET_BYTES)
    return `its target is longer than ${MAX_TARGET_BYTES} bytes`;
  const parts = path.split("/").slice(0, -1);
  for (const part of target.split("/")) {
    if (part === "" || part === ".") continue;
    if (part === "..") {
      if (parts.length === 0) return "its target points outside the tree";
      parts.pop();
    } else {
      parts.push(part);
    }
  }
  return undefined;
}

/** Validates a whole manifest: paths, links, digests, order, no duplicates. */
export function assertManifest(manifest: ArtifactManifest): ArtifactManifest {
  if (manifest.version !== 1 || !Array.isArray(manifest.entries)) {
    throw new TurnoutError("E_VALIDATION", "not an artifact manifest (version 1)");
  }
  let previous = "";
  for (const entry of manifest.entries) {
    // Manifests also arrive from the network (an agent's stage call): every field is checked here.
    const problem = entryShapeProblem(entry);
    if (problem) throw new TurnoutError("E_VALIDATION", `bad manifest entry: ${problem}`);
    assertEntryPath(entry.path);
    if (entry.path <= previous)
      throw new TurnoutError("E_VALIDATION", `artifact manifest not sorted at ${entry.path}`);
    previous = entry.path;
    if (
      entry.type === "file" &&
      (!isSha256(entry.sha256) || !Number.isInteger(entry.size) || entry.size < 0)
    ) {
      throw new TurnoutError("E_VALIDATION", `bad file entry ${entry.path}`);
    }
    if (entry.type === "symlink") {
      const problem = linkProblem(entry.path, entry.target);
      if (problem)
        throw new TurnoutError("E_VALIDATION", `unsafe symlink ${entry.path}: ${problem}`, {
          path: entry.path,
        });
    }
  }
  return manifest;
}

function entryShapeProblem(entry: unknown): string | undefined {
  if (typeof entry !== "object" || entry === null) return "not an object";
  const e = entry as Record<string, unknown>;
  if (typeof e.path !== "string") return "path is not a string";
  const mode = (m: unknown) => Number.isInteger(m) && (m as number) >= 0 && (m as number) <= 0o7777;
  switch (e.type) {
    case "dir":
      return mode(e.mode) ? undefined : `${e.path}: bad mode`;
    case "file":
      return mode(e.mode) && typeof e.sha256 === "string" ? undefined : `${e.path}: bad mode or digest`;
    case "symlink":
      return typeof e.target === "string" ? undefined : `${e.path}: target is not a string`;
    default:
      return `${e.path}: unknown type ${JSON.stringify(e.type)}`;
  }
}

/** sha256 of the manifest's canonical JSON: the artifact's identity. */
export function manifestDigest(manifest: ArtifactManifest): string {
  return createHash("sha256").update(canonicalManifest(manifest)).digest("hex");
}

export function canonicalManifest(manifest: ArtifactManifest): string {
  return JSON.stringify({
    version: 1,
    entries: manifest.entries.map((e) =>
      e.type === "file"
        ? { path: e.path, type: e.type, mode: e.mode, size: e.size, sha256: e.sha256 }
        : e.type === "dir"
          ? { path: e.path, type: e.type, mode: e.mode }
          : { path: e.path, type: e.type, target: e.target },
    ),
  });
}

/** The name of a release's directory on hosts: the artifact's digest, shortened. */
export function hostReleaseId(digest: string): string {
  return digest.slice(0, 16);
}

const RELEASE_ID = /^[0-9a-f]{16}$/;
export function isHostReleaseId(value: string): boolean {
  return RELEASE_ID.test(value);
}
