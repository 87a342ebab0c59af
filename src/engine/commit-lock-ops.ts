import type { AppConfig } from "../domain/app-config.js";
import type { CommitLock } from "../domain/deploy-guards.js";
import { TurnoutError } from "../domain/errors.js";
import { isFullSha } from "../domain/refs.js";
import type { GitMirrors } from "../git/mirrors.js";
import type { Store } from "../store/store.js";
import { remoteOf } from "./components.js";

/**
 * Locking and unlocking commits of an app. The SHA given may be short: it
 * is resolved, after a fetch, in the app's repositories (the first that has
 * it), so a lock always names one full commit. Only hexadecimal SHAs are
 * taken, never branch names: a lock is on a commit, not on what a branch
 * points at today.
 */
const HEX = /^[0-9a-f]{4,64}$/;

export async function resolveCommit(git: GitMirrors, app: AppConfig, sha: string): Promise<string> {
  const text = sha.trim().toLowerCase();
  if (!HEX.test(text)) {
    throw new TurnoutError("E_INVALID_REF", `not a commit SHA: ${JSON.stringify(sha)} (4 to 64 hex digits)`);
  }
  let lastError: unknown;
  for (const component of app.components) {
    try {
      const full = await git.resolve(remoteOf(component), text);
      if (isFullSha(full)) return full;
    } catch (error) {
      lastError = error;
    }
  }
  if (lastError instanceof TurnoutError && lastError.code !== "E_REF_NOT_FOUND") throw lastError;
  throw new TurnoutError("E_REF_NOT_FOUND", `no commit ${text} in the repositories of ${app.name}`, {
    app: app.name,
    sha: text,
  });
}

export async function lockCommit(
  deps: { git: GitMirrors; store: Store },
  app: AppConfig,
  sha: string,
  by: string,
  reason: string,
): Promise<CommitLock> {
  const text = reason.trim();
  if (!text) throw new TurnoutError("E_VALIDATION", "a commit lock needs a reason");
  const full = await resolveCommit(deps.git, app, sha);
  return deps.store.commitLocks.lock(app.name, full, by, text);
}

/** Unlocks by full or short SHA, matched against the locks in force (the commit may be gone from the branch). */
export async function unlockCommit(
  deps: { store: Store },
  app: AppConfig,
  sha: string,
  by: string,
): Promise<CommitLock | undefined> {
  const text = sha.trim().toLowerCase();
  if (!HEX.test(text)) {
    throw new TurnoutError("E_INVALID_REF", `not a commit SHA: ${JSON.stringify(sha)} (4 to 64 hex digits)`);
  }
  const matches = (await deps.store.commitLocks.inForce(app.name)).filter((l) => l.sha.startsWith(text));
  if (matches.length > 1) {
    throw new TurnoutError("E_INVALID_REF", `${text} names more than one locked commit: give more digits`, {
      candidates: matches.map((l) => l.sha),
    });
  }
  const lock = matches[0];
  return lock ? deps.store.commitLocks.unlock(app.name, lock.sha, by) : undefined;
}
