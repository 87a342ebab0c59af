import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { isTurnoutError, TurnoutError } from "../domain/errors.js";
import { SecretMasker } from "../domain/secrets.js";
import { baseGitEnv } from "./git-env.js";
import { readRefs } from "./hosted-repos.js";
import { runGit } from "./run-git.js";

/**
 * The git side of sharing a hosted repository between servers: bundles of
 * what a push added (`git bundle create`, relative to the refs before it),
 * applying them to another copy (`git bundle unbundle`, which checks that
 * the copy holds the bundle's prerequisites), and setting every ref at once
 * (`git update-ref --stdin`, one transaction: all refs move or none).
 * Bundles go through a private temporary directory, never through a shell.
 */
const GIT_TIMEOUT_MS = 10 * 60 * 1000;
const NO_SECRETS = new SecretMasker([]);
// What for-each-ref prints and update-ref accepts; anything else from the database is refused.
const REFNAME = /^refs\/[^\s\0\\~^:?*[]+$/;
const OBJECT_ID = /^(?:[0-9a-f]{40}|[0-9a-f]{64})$/;

function git(repoPath: string, args: string[], what: string, input?: string): Promise<string> {
  return runGit(args, {
    what: `${what} (${repoPath})`,
    env: { ...baseGitEnv(), GIT_DIR: repoPath },
    timeoutMs: GIT_TIMEOUT_MS,
    masker: NO_SECRETS,
    ...(input === undefined ? {} : { input }),
  });
}

async function withTempFile<T>(use: (file: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(path.join(tmpdir(), "turnout-bundle-"));
  try {
    return await use(path.join(dir, "push.bundle"));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * A bundle of the refs `tips` (refnames) with everything they reach except
 * what `known` (object ids) reach; null when that is nothing (a force push to
 * a commit the repository had, a new branch at a known commit).
 */
export async function createBundle(
  repoPath: string,
  tips: readonly string[],
  known: readonly string[],
): Promise<Buffer | null> {
  if (tips.length === 0) return null;
  for (const tip of tips) assertRefname(tip);
  for (const id of known) assertObjectId(id);
  const input = `${[...tips, ...known.map((id) => `^${id}`)].join("\n")}\n`;
  return withTempFile(async (file) => {
    try {
      await git(repoPath, ["bundle", "create", "--quiet", file, "--stdin"], "bundling a push", input);
    } catch (error) {
      if (isTurnoutError(error) && /empty bundle/i.test(error.message)) return null;
      throw error;
    }
    return readFile(file);
  });
}

/** A bundle of every ref and everything they reach (compaction); null for a repository without refs. */
export async function createFullBundle(repoPath: string): Promise<Buffer | null> {
  const refs = await readRefs(repoPath);
  return createBundle(repoPath, [...refs.keys()], []);
}

/** Adds a bundle's objects (refs untouched); fails when the repository lacks its prerequisites. */
export async function applyBundle(repoPath: string, bundle: Buffer): Promise<void> {
  await withTempFile(async (file) => {
    await writeFile(file, bundle, { mode: 0o600 });
    await git(repoPath, ["bundle", "unbundle", "--", file], "applying a bundle of another server's push");
  });
}

/** Sets the refs to exactly `wanted` (others deleted), in one transaction. */
export async function setRefs(repoPath: string, wanted: Readonly<Record<string, string>>): Promise<void> {
  const current = await readRefs(repoPath);
  const lines: string[] = [];
  for (const [ref, id] of Object.entries(wanted)) {
    assertRefname(ref);
    assertObjectId(id);
    if (current.get(ref) !== id) lines.push(`update ${ref} ${id}`);
  }
  for (const ref of current.keys()) if (!(ref in wanted)) lines.push(`delete ${ref}`);
  if (lines.length === 0) return;
  const input = `start\n${lines.join("\n")}\nprepare\ncommit\n`;
  await git(repoPath, ["update-ref", "--stdin"], "setting the refs of a hosted repository", input);
}

function assertRefname(ref: string): void {
  if (!REFNAME.test(ref) || ref.includes("..") || ref.endsWith(".lock") || ref.endsWith("/")) {
    throw new TurnoutError("E_GIT", `refusing the ref name ${JSON.stringify(ref.slice(0, 200))}`);
  }
}

function assertObjectId(id: string): void {
  if (!OBJECT_ID.test(id))
    throw new TurnoutError("E_GIT", `refusing the object id ${JSON.stringify(id.slice(0, 80))}`);
}
