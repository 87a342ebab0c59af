import { assertSha } from "../domain/refs.js";
import { SecretMasker } from "../domain/secrets.js";
import { baseGitEnv } from "./git-env.js";
import type { GitMirrors, GitRemote } from "./mirrors.js";
import { redactUrl } from "./remote-url.js";
import { runGit } from "./run-git.js";

/**
 * How many commits `to` has that `from` has not (all of `to`'s history when
 * `from` is null), counted in the mirror as it is, up to `cap`: one
 * `git rev-list --count`, whatever the number. A `from` missing from the
 * history (force push) counts `to`'s history, capped.
 */
export async function countCommits(
  git: GitMirrors,
  remote: GitRemote,
  from: string | null,
  to: string,
  cap: number,
): Promise<{ count: number; truncated: boolean }> {
  assertSha(to);
  if (from !== null) assertSha(from);
  const run = (range: string[]) =>
    runGit(["rev-list", "--count", `--max-count=${cap + 1}`, ...range, "--"], {
      what: `counting commits in ${redactUrl(remote.url)}`,
      cwd: git.mirrorPath(remote),
      env: baseGitEnv(),
      timeoutMs: 60_000,
      masker: new SecretMasker(git.secretsOf(remote)),
    });
  let stdout: string;
  try {
    stdout = await run(from === null ? [to] : [to, `^${from}`]);
  } catch (error) {
    if (from === null) throw error;
    stdout = await run([to]);
  }
  const count = Number(stdout.trim());
  return count > cap ? { count: cap, truncated: true } : { count, truncated: false };
}
