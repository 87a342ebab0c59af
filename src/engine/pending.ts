import type { GithubChecks } from "../checks/github-checks.js";
import type { AppConfig, EnvironmentConfig } from "../domain/app-config.js";
import type { CommitInfo, GitMirrors } from "../git/mirrors.js";
import type { Store } from "../store/store.js";
import type { PendingCommit, PendingComponent } from "./api.js";
import { remoteOf } from "./components.js";

/**
 * What the next deploy of an environment would ship: per component, the
 * commits between its current release and its branch head, with the check
 * state of the newest ones (one GitHub look per commit, so only a few).
 */
const MAX_COMMITS = 100;
const CHECKED_COMMITS = 10;

export async function pendingChanges(deps: {
  git: GitMirrors;
  store: Store;
  githubChecks: GithubChecks;
  app: AppConfig;
  environment: EnvironmentConfig;
}): Promise<PendingComponent[]> {
  const { git, app, environment } = deps;
  const current = await deps.store.releases.current(app.name, environment.name);
  // Locked commits are marked: automatic deploys stop before them, manual ones need force.
  const locks = new Map((await deps.store.commitLocks.inForce(app.name)).map((l) => [l.sha, l]));
  return Promise.all(
    app.components.map(async (component): Promise<PendingComponent> => {
      const remote = remoteOf(component);
      const branch = environment.branches[component.name] ?? environment.branch;
      const to = await git.resolve(remote, branch);
      const from = current?.components[component.name] ?? null;
      const commits = from === to ? [] : await logSince(git, remote, from, to);
      const truncated = commits.length > MAX_COMMITS;
      const shown = commits.slice(0, MAX_COMMITS);
      const states = await checkStates(deps, shown.slice(0, CHECKED_COMMITS));
      return {
        component: component.name,
        branch,
        from,
        to,
        commits: shown.map((c, i): PendingCommit => {
          const lock = locks.get(c.sha);
          return {
            ...c,
            checks: states[i] ?? null,
            locked: lock ? { reason: lock.reason, lockedBy: lock.lockedBy, lockedAt: lock.lockedAt } : null,
          };
        }),
        truncated,
      };
    }),
  );
}

async function logSince(
  git: GitMirrors,
  remote: ReturnType<typeof remoteOf>,
  from: string | null,
  to: string,
): Promise<CommitInfo[]> {
  try {
    return await git.log(remote, from, to, MAX_COMMITS + 1);
  } catch (error) {
    // The current release's commit is gone from the branch's history (force
    // push, pruned): show the branch's newest commits instead of nothing.
    if (from === null) throw error;
    return git.log(remote, null, to, MAX_COMMITS + 1);
  }
}

async function checkStates(
  deps: { githubChecks: GithubChecks; app: AppConfig; environment: EnvironmentConfig },
  commits: CommitInfo[],
): Promise<(PendingCommit["checks"] | null)[]> {
  const required = deps.environment.checks?.required ?? [];
  const github = deps.app.github;
  if (required.length === 0 || !github) return commits.map(() => null);
  return Promise.all(
    commits.map(async (commit) => {
      try {
        return (await deps.githubChecks.report(github, commit.sha, required)).state;
      } catch {
        return null; // GitHub unreachable: the preview still lists the commits
      }
    }),
  );
}
