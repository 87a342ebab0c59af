import { type DeployWindows, describeInstant, windowState } from "./deploy-window.js";
import { TurnoutError } from "./errors.js";

/**
 * The guards an environment puts on deploys beyond locks and checks:
 * deploy windows, commit locks, and (for automatic deploys) how many commits
 * one deploy may bring and how often. Pure rules; the engine reads the
 * facts (the clock, the commit ranges, the locks) and applies them.
 */
export interface CommitLock {
  app: string;
  sha: string;
  reason: string;
  lockedBy: string;
  lockedAt: string;
  /** When it was unlocked, and by whom (null: in force). */
  unlockedAt: string | null;
  unlockedBy: string | null;
}

/** Why a manual deploy may go ahead outside its window or past a locked commit: recorded on it. */
export const WINDOW_SAFETY = "window";
export const COMMIT_LOCK_SAFETY = "commit-lock";

/**
 * A manual deploy outside the environment's windows is refused unless
 * forced, and a forced one must say why (the reason goes to the audit log).
 */
export function checkWindow(
  target: { app: string; env: string; windows: DeployWindows | undefined },
  now: Date,
  force: { force: boolean; reason: string | undefined },
): { ignoredSafeties: string[] } {
  if (!target.windows) return { ignoredSafeties: [] };
  const state = windowState(target.windows, now);
  if (state.open) return { ignoredSafeties: [] };
  if (force.force) {
    requireReason(force.reason, "outside its deploy windows");
    return { ignoredSafeties: [WINDOW_SAFETY] };
  }
  throw new TurnoutError(
    "E_OUTSIDE_WINDOW",
    `${target.app}/${target.env} is outside its deploy windows; ${nextWindowText(state.opensAt, target.windows.timezone)}` +
      " (deploy anyway with --force and --reason)",
    {
      app: target.app,
      env: target.env,
      timezone: target.windows.timezone,
      nextWindowAt: state.opensAt?.toISOString() ?? null,
    },
  );
}

/** "the next window opens 2026-12-07 09:00 Europe/Berlin (08:00 UTC)". */
export function nextWindowText(opensAt: Date | null, timezone: string): string {
  return opensAt
    ? `the next window opens ${describeInstant(opensAt, timezone)}`
    : "no window is ever open (check deploy_windows)";
}

/**
 * A manual deploy whose range (what the environment runs .. the target)
 * contains a locked commit is refused unless forced; the error names every
 * locked commit in the range.
 */
export function checkCommitLocks(
  target: { app: string; env: string },
  lockedInRange: CommitLock[],
  force: boolean,
): { ignoredSafeties: string[] } {
  if (lockedInRange.length === 0) return { ignoredSafeties: [] };
  if (force) return { ignoredSafeties: [COMMIT_LOCK_SAFETY] };
  const first = lockedInRange[0]!;
  const more = lockedInRange.length > 1 ? ` and ${lockedInRange.length - 1} more locked commit(s)` : "";
  throw new TurnoutError(
    "E_COMMIT_LOCKED",
    `deploying this to ${target.app}/${target.env} would ship commit ${first.sha.slice(0, 12)}, locked by ${first.lockedBy}: ${first.reason}${more}` +
      " (deploy anyway with --force)",
    {
      app: target.app,
      env: target.env,
      commits: lockedInRange.map((l) => ({
        sha: l.sha,
        reason: l.reason,
        lockedBy: l.lockedBy,
        lockedAt: l.lockedAt,
      })),
    },
  );
}

function requireReason(reason: string | undefined, what: string): void {
  if (reason === undefined || reason.trim() === "") {
    throw new TurnoutError("E_VALIDATION", `forcing a deploy ${what} needs a reason (--reason)`);
  }
}

/**
 * Where an automatic deploy of one component stops, given the first-parent
 * chain from what runs to the branch head (oldest first): before the first
 * commit that brings in a locked commit, and after at most `maxCommits`
 * commits. Returns the index in the chain to deploy (-1: stay where it is).
 */
export function autoStop(
  chainLength: number,
  firstLockedIndex: number | undefined,
  maxCommits: number | undefined,
): number {
  let stop = chainLength - 1;
  if (firstLockedIndex !== undefined) stop = Math.min(stop, firstLockedIndex - 1);
  if (maxCommits !== undefined) stop = Math.min(stop, maxCommits - 1);
  return stop;
}
