import { lstatSync, readlinkSync, type Stats } from "node:fs";
import { type BlobCache, cachedFileMode } from "./blob-cache.js";
import { errorCode } from "./fs-util.js";
import { hashFileSync } from "./hash-file.js";
import { type ReleasePlan, sharedLinkTarget } from "./release-plan.js";

/**
 * Whether a release already on the host is still what its manifest says:
 * every directory, file, symlink and shared link the plan lists is there,
 * with the right kind, size, mode and target, and every file holds its
 * blob's bytes. A file that is the cache's verified inode for its digest
 * and mode holds them (BlobCache keeps that inode checked); any other file
 * (a copy, or one whose cache name is gone or damaged) is hashed. Anything
 * the release has beyond the plan (what a before_switch hook wrote) is not
 * looked at.
 *
 * Returns the problems found, at most `limit` of them; empty means whole.
 * Synchronous: thousands of lstat calls, each a few microseconds.
 */
export function releaseProblems(dir: string, plan: ReleasePlan, cache: BlobCache, limit = 5): string[] {
  const problems: string[] = [];
  const add = (path: string, why: string) => {
    problems.push(`${path}: ${why}`);
    return problems.length >= limit;
  };
  for (const entry of plan.dirs) {
    const stat = lstatOrUndefined(`${dir}/${entry.path}`);
    if (!stat?.isDirectory() && add(entry.path, stat ? "not a directory" : "missing")) return problems;
  }
  for (const file of plan.files) {
    const path = `${dir}/${file.path}`;
    const stat = lstatOrUndefined(path);
    const mode = cachedFileMode(file.mode);
    let why: string | undefined;
    if (!stat) why = "missing";
    else if (!stat.isFile()) why = "not a regular file";
    else if (stat.size !== file.size) why = `${stat.size} bytes, the manifest says ${file.size}`;
    else if ((stat.mode & 0o7777) !== mode)
      why = `mode ${(stat.mode & 0o7777).toString(8)}, not ${mode.toString(8)}`;
    else if (cache.verifiedInode(file.sha256, file.size, mode) !== stat.ino && !hashes(path, file.sha256))
      why = "bytes do not match the digest";
    if (why !== undefined && add(file.path, why)) return problems;
  }
  for (const link of plan.links) {
    const target = readlinkOrUndefined(`${dir}/${link.path}`);
    if (
      target !== link.target &&
      add(link.path, target === undefined ? "missing symlink" : `points at ${target}`)
    )
      return problems;
  }
  for (const path of plan.shared) {
    const target = readlinkOrUndefined(`${dir}/${path}`);
    if (target !== sharedLinkTarget(path) && add(path, "not a link to shared/")) return problems;
  }
  return problems;
}

function hashes(path: string, sha256: string): boolean {
  try {
    return hashFileSync(path) === sha256;
  } catch (error) {
    if (errorCode(error) === "EACCES" || errorCode(error) === "EPERM") return false;
    throw error;
  }
}

function lstatOrUndefined(path: string): Stats | undefined {
  try {
    return lstatSync(path, { throwIfNoEntry: false });
  } catch (error) {
    if (errorCode(error) === "ENOTDIR") return undefined;
    throw error;
  }
}

function readlinkOrUndefined(path: string): string | undefined {
  try {
    return readlinkSync(path);
  } catch (error) {
    const code = errorCode(error);
    if (code === "ENOENT" || code === "EINVAL" || code === "ENOTDIR") return undefined;
    throw error;
  }
}
