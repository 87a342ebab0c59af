import type { AppConfig, EnvironmentConfig } from "../domain/app-config.js";
import type { Components } from "../domain/deploy.js";
import { autoStop, type CommitLock } from "../domain/deploy-guards.js";
import { commitsPresent, firstParentChain, isAncestor } from "../git/ancestry.js";
import type { GitMirrors } from "../git/mirrors.js";
import type { Store } from "../store/store.js";
import { remoteOf } from "./components.js";

/**
 * The git side of the deploy guards (rules in domain/deploy-guards.ts):
 * which locked commits a range would ship, and where an automatic deploy
 * stops short of the branch heads. Read from the mirrors as they are.
 */

/** How far back the first-parent chain of an environment never deployed is read. */
const CHAIN_CAP = 10_000;

/**
 * The locks in force on commits that deploying `to` would bring to an
 * environment running `from` (null: nothing yet): commits in `to`'s history
 * and not in `from`'s, per component.
 */
export async function lockedInRange(
  deps: { git: GitMirrors; store: Store },
  app: AppConfig,
  from: Components | null,
  to: Components,
): Promise<CommitLock[]> {
  const locks = await deps.store.commitLocks.inForce(app.name);
  if (locks.length === 0) return [];
  const found: CommitLock[] = [];
  for (const component of app.components) {
    const target = to[component.name];
    if (!target) continue;
    const remote = remoteOf(component);
    const present = await commitsPresent(
      deps.git,
      remote,
      locks.map((l) => l.sha),
    );
    const live = from?.[component.name] ?? null;
    for (const lock of locks) {
      if (!present.has(lock.sha) || found.includes(lock)) continue;
      if (!(await isAncestor(deps.git, remote, lock.sha, target))) continue;
      if (live !== null && (await isAncestor(deps.git, remote, lock.sha, live).catch(() => false))) continue;
      found.push(lock);
    }
  }
  return found;
}

export interface AutoTargetResult {
  /** null: nothing may be deployed (never deployed, and the oldest commits read are locked). */
  components: Components | null;
  /** Why it stops short of a head, if it does: the locked commits, or the commit limit. */
  heldBy: { commitLocks: CommitLock[]; limited: boolean };
}

/**
 * Where an automatic deploy goes, given the branch heads: per component,
 * along the first-parent chain from what runs, stopping before the first
 * commit that brings in a locked one, and after `max_commits_per_deploy`
 * commits. A component with nothing to stop for goes to its head.
 */
export async function autoTarget(
  deps: { git: GitMirrors; store: Store },
  app: AppConfig,
  environment: EnvironmentConfig,
  heads: Components,
): Promise<AutoTargetResult> {
  const components: Components = { ...heads };
  const result = { components, heldBy: { commitLocks: [] as CommitLock[], limited: false } };
  const current = await deps.store.releases.current(app.name, environment.name);
  const live = current?.components ?? null;
  const locked = await lockedInRange(deps, app, live, heads);
  // The first deploy of an environment is its heads: there is no "next one" for the rest to follow in.
  const max = live === null ? undefined : environment.maxCommitsPerDeploy;
  if (locked.length === 0 && max === undefined) return result;
  for (const component of app.components) {
    const head = heads[component.name];
    const from = live?.[component.name] ?? null;
    if (!head || head === from) continue;
    const remote = remoteOf(component);
    const mine: CommitLock[] = [];
    for (const lock of locked) {
      if ((await commitsPresent(deps.git, remote, [lock.sha])).has(lock.sha)) mine.push(lock);
    }
    if (mine.length === 0 && max === undefined) continue;
    let chain: string[];
    try {
      chain = await firstParentChain(deps.git, remote, from, head, CHAIN_CAP);
    } catch {
      // What runs is gone from the mirror (force push, pruned): no chain to walk; the heads it is.
      continue;
    }
    let firstLocked: number | undefined;
    let stoppers: CommitLock[] = [];
    for (const lock of mine) {
      const at = await firstContaining(deps.git, remote, chain, lock.sha);
      if (at === undefined) continue;
      if (firstLocked === undefined || at < firstLocked) {
        firstLocked = at;
        stoppers = [lock];
      } else if (at === firstLocked) stoppers.push(lock);
    }
    const stop = autoStop(chain.length, firstLocked, max);
    if (stop === chain.length - 1) continue;
    if (firstLocked !== undefined && stop === firstLocked - 1) result.heldBy.commitLocks.push(...stoppers);
    else result.heldBy.limited = true;
    if (stop >= 0) components[component.name] = chain[stop]!;
    else if (from !== null) components[component.name] = from;
    else return { components: null, heldBy: result.heldBy };
  }
  return result;
}

/** The index of the first commit of the chain whose history holds `sha` (ancestry grows along the chain). */
async function firstContaining(
  git: GitMirrors,
  remote: ReturnType<typeof remoteOf>,
  chain: string[],
  sha: string,
): Promise<number | undefined> {
  if (chain.length === 0 || !(await isAncestor(git, remote, sha, chain[chain.length - 1]!))) return undefined;
  let lo = 0;
  let hi = chain.length - 1;
  while (lo < hi) {
    const mid = Math.floor((lo + hi) / 2);
    if (await isAncestor(git, remote, sha, chain[mid]!)) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}
