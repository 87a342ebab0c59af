import { isTurnoutError } from "../domain/errors.js";
import { assertSha, isFullSha } from "../domain/refs.js";
import { SecretMasker } from "../domain/secrets.js";
import { baseGitEnv } from "./git-env.js";
import type { GitMirrors, GitRemote } from "./mirrors.js";
import { redactUrl } from "./remote-url.js";
import { runGit } from "./run-git.js";

/**
 * Questions of history asked of a mirror as it is (no fetch), for the
 * deploy guards: which commits a mirror has, whether one commit is in
 * another's history, and the first-parent chain between two commits. Every
 * argument is a full SHA, checked, after `--end-of-options` where git takes
 * revisions.
 */
function options(git: GitMirrors, remote: GitRemote, what: string, input?: string) {
  return {
    what: `${what} in ${redactUrl(remote.url)}`,
    cwd: git.mirrorPath(remote),
    env: baseGitEnv(),
    timeoutMs: 60_000,
    masker: new SecretMasker(git.secretsOf(remote)),
    ...(input === undefined ? {} : { input }),
  };
}

/** The given SHAs that name commits the mirror has. */
export async function commitsPresent(
  git: GitMirrors,
  remote: GitRemote,
  shas: string[],
): Promise<Set<string>> {
  const wanted = shas.filter(isFullSha);
  if (wanted.length === 0) return new Set();
  const stdout = await runGit(
    ["cat-file", "--batch-check"],
    options(git, remote, "looking up commits", `${wanted.join("\n")}\n`),
  );
  const present = new Set<string>();
  for (const line of stdout.split("\n")) {
    const [sha, type] = line.split(" ");
    if (sha && type === "commit") present.add(sha);
  }
  return present;
}

/** Whether `ancestor` is `descendant` or in its history. */
export async function isAncestor(
  git: GitMirrors,
  remote: GitRemote,
  ancestor: string,
  descendant: string,
): Promise<boolean> {
  assertSha(ancestor);
  assertSha(descendant);
  try {
    await runGit(
      ["merge-base", "--is-ancestor", ancestor, descendant],
      options(git, remote, "comparing histories"),
    );
    return true;
  } catch (error) {
    // Exit 1 is "no"; anything else is a real failure.
    if (isTurnoutError(error) && error.details?.["exitCode"] === 1) return false;
    throw error;
  }
}

/**
 * The first-parent chain from just after `from` up to `to`, oldest first
 * (all of `to`'s first-parent history when `from` is null), at most `cap`
 * commits (the newest ones when there are more).
 */
export async function firstParentChain(
  git: GitMirrors,
  remote: GitRemote,
  from: string | null,
  to: string,
  cap: number,
): Promise<string[]> {
  assertSha(to);
  if (from !== null) assertSha(from);
  const stdout = await runGit(
    [
      "rev-list",
      "--first-parent",
      `--max-count=${Math.max(1, Math.floor(cap))}`,
      "--end-of-options",
      to,
      ...(from === null ? [] : [`^${from}`]),
      "--",
    ],
    options(git, remote, "listing first-parent commits"),
  );
  return stdout.split("\n").filter(isFullSha).reverse();
}
