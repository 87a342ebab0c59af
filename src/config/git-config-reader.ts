import type { SecretMasker } from "../domain/secrets.js";
import { baseGitEnv } from "../git/git-env.js";
import { runGit } from "../git/run-git.js";
import { MAX_MANIFEST_BYTES, tooLargeMessage } from "./manifest-limits.js";

/**
 * Reads the manifests of one commit of a configuration repository straight
 * from its bare mirror (no checkout, nothing on disk changes). Which files:
 * the `*.yaml` / `*.yml` files directly in `turnout.d/` when the commit has
 * that folder, otherwise those at the repository root. One place or the
 * other, never both, so a repository that keeps other YAML at its root (CI
 * files, compose files) puts its manifests in `turnout.d/` and is not
 * misread. Dot-files and subfolders are never read.
 */
export const CONFIG_FOLDER = "turnout.d";

const MANIFEST_NAME = /^[^.][^/]*\.ya?ml$/;

/** A manifest of the commit: its blob, or why it is refused without being read. */
export type ManifestEntry =
  | { path: string; object: string; size: number }
  | { path: string; refusal: string };

export interface ReadOptions {
  /** The bare mirror holding the commit. */
  gitDir: string;
  /** Full SHA of the commit. */
  sha: string;
  masker: SecretMasker;
  timeoutMs: number;
}

/**
 * The manifests of the commit, not read yet: the caller reads (readBlob) only
 * the blobs it has not parsed before, since a blob id names its content.
 */
export async function listManifestsAt(options: ReadOptions): Promise<ManifestEntry[]> {
  const inFolder = await listTree(options, `${CONFIG_FOLDER}/`);
  const entries = inFolder.length > 0 ? inFolder : await listTree(options, undefined);
  const manifests: ManifestEntry[] = [];
  for (const entry of entries) {
    const name = entry.path.slice(entry.path.lastIndexOf("/") + 1);
    if (!MANIFEST_NAME.test(name) || entry.type === "tree") continue;
    // A symbolic link's blob is its target's name, and a submodule has no content here:
    // neither is a manifest, and silently skipping one would hide an app.
    if (entry.mode === "120000") {
      manifests.push({ path: entry.path, refusal: "is a symbolic link; manifests must be regular files" });
    } else if (entry.type !== "blob") {
      manifests.push({ path: entry.path, refusal: `is a ${entry.type}, not a file` });
    } else if (entry.size > MAX_MANIFEST_BYTES) {
      manifests.push({ path: entry.path, refusal: tooLargeMessage(entry.size) });
    } else {
      manifests.push({ path: entry.path, object: entry.object, size: entry.size });
    }
  }
  return manifests;
}

interface TreeEntry {
  mode: string;
  type: string;
  object: string;
  size: number;
  path: string;
}

/** `git ls-tree -z -l` of the commit's root, or of one folder (given with a trailing '/'). */
async function listTree(options: ReadOptions, folder: string | undefined): Promise<TreeEntry[]> {
  const stdout = await runGit(
    ["ls-tree", "-z", "-l", "--full-tree", options.sha, ...(folder ? ["--", folder] : [])],
    {
      what: `listing the configuration files of ${options.sha}`,
      cwd: options.gitDir,
      env: baseGitEnv(),
      timeoutMs: options.timeoutMs,
      masker: options.masker,
    },
  );
  const entries: TreeEntry[] = [];
  for (const record of stdout.split("\0")) {
    // <mode> SP <type> SP <object> SP+ <size or '-'> TAB <path>
    const match = /^(\d+) (\w+) ([0-9a-f]+) +(\d+|-)\t(.+)$/s.exec(record);
    if (!match) continue;
    const [, mode, type, object, size, entryPath] = match as unknown as [
      string,
      string,
      string,
      string,
      string,
      string,
    ];
    entries.push({ mode, type, object, size: size === "-" ? 0 : Number(size), path: entryPath });
  }
  return entries.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

/** The content of one manifest (its size was checked against the cap when listed). */
export async function readBlob(options: ReadOptions, object: string, repoPath: string): Promise<string> {
  return runGit(["cat-file", "blob", object], {
    what: `reading ${repoPath} at ${options.sha}`,
    cwd: options.gitDir,
    env: baseGitEnv(),
    timeoutMs: options.timeoutMs,
    masker: options.masker,
  });
}
