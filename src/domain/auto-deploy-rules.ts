import type { Components, DeployStatus } from "./deploy.js";

/**
 * Whether an environment with `auto_deploy` gets a deploy, as a pure rule
 * over what the store knows (read in one transaction with the environment's
 * row locked, see store/auto-admission.ts). The environment should run its
 * **desired state**: the heads of its branches, with the settings last
 * decided for it (the per-app revision recorded when a server saw the
 * configuration change, or started). Anything else is reconciled by one
 * deploy, unless a rule below says to leave it:
 *
 * 1. a locked environment gets nothing (it catches up after unlock);
 * 2. commits a rollback moved away from are not brought back until a newer
 *    commit arrives, and the settings of that rollback stay until a newer
 *    settings decision;
 * 3. what runs already is not deployed again;
 * 4. settings are redeployed only by a server whose own configuration is the
 *    decided one (a server still on an older configuration cannot deploy the
 *    newer), and once per decision: if a server with other settings ran that
 *    deploy, the next decision settles it, not a loop between servers;
 * 5. a deploy already queued with the same commits (it will run with the
 *    settings of when it starts), or running with the same commits and
 *    settings, is enough;
 * 6. commits (with these settings) whose last deploy here failed or was
 *    cancelled are not retried by themselves;
 * 7. a queued automatic deploy is replaced by the newer one (coalescing);
 *    deploys someone asked for are never replaced;
 * 8. with `min_interval`, a new automatic deploy waits until that long
 *    after the last one was made (replacing a queued one adds none).
 *
 * Deploy windows, commit locks and `max_commits_per_deploy` are applied
 * before this, to the wish itself (engine/auto-deploy.ts, engine/guards.ts).
 */
export interface AutoFacts {
  locked: boolean;
  /** The environment's current release, if it has one. */
  live: LiveFacts | null;
  /** The settings decided for the environment (null: no decision recorded yet). */
  desired: { appRevision: string; at: string } | null;
  /** Queued, waiting and running deploys, oldest first. */
  pending: PendingFacts[];
  /** The latest finished deploys of the environment, newest first. */
  finished: FinishedFacts[];
  /** When the environment's last automatic deploy was made (null or absent: never). */
  lastAutomaticAt?: string | null;
}

export interface LiveFacts {
  components: Components;
  /** null: recorded before per-app revisions existed; taken as the decided settings. */
  appRevision: string | null;
  /** The live release came from a rollback (or a settings redeploy of one): what it moved away from, and when. */
  rollback: { from: Components; at: string } | null;
}

export interface PendingFacts {
  id: number;
  status: DeployStatus;
  /** Made by auto-deploy (trigger auto, webhook or push): may be replaced while queued. */
  automatic: boolean;
  components: Components;
  appRevision: string | null;
}

export interface FinishedFacts {
  status: DeployStatus;
  components: Components;
  appRevision: string | null;
  createdAt: string;
}

export interface AutoWish {
  /** The heads of the environment's branches, per component. */
  components: Components;
  /** The per-app revision this server process runs the environment's deploys with. */
  appRevision: string;
  /** The branch heads, when `components` stops short of them (commit locks, max_commits_per_deploy). */
  heads?: Components | undefined;
  /** `min_interval`, and the time it is measured against (ISO). */
  minIntervalMs?: number | undefined;
  now?: string | undefined;
}

export type SkipReason =
  | "locked"
  | "current"
  | "rolled-back"
  | "active"
  | "queued"
  | "failed"
  | "other-settings"
  | "interval"
  | "window"
  | "commit-locked";

export interface AutoTarget {
  components: Components;
  /** The revision the deploy is meant to run with (the worker records what it really runs with). */
  appRevision: string;
  /** Same commits as live: only the settings change (made by `turnout (config)`). */
  settingsOnly: boolean;
  /** Carried over from a live rollback, so that a settings redeploy does not end its stickiness. */
  rolledBackFrom: Components | null;
}

export type AutoDecision =
  | { action: "skip"; why: SkipReason; until?: string }
  | ({ action: "create" } & AutoTarget)
  | ({ action: "replace"; deployId: number } & AutoTarget);

export function decideAutoDeploy(facts: AutoFacts, wish: AutoWish): AutoDecision {
  if (facts.locked) return { action: "skip", why: "locked" };
  const { live, desired } = facts;
  const decided = desired?.appRevision ?? null;

  // Rule 2, commits: while the branch heads are what a rollback moved away
  // from, the environment stays on the commits it runs.
  const held = live?.rollback != null && sameCommits(wish.heads ?? wish.components, live.rollback.from);
  const components = held ? live!.components : wish.components;
  let settingsOnly = false;
  if (live && sameCommits(components, live.components)) {
    if (decided === null || live.appRevision === null || live.appRevision === decided) {
      return { action: "skip", why: held ? "rolled-back" : "current" };
    }
    // Rule 2, settings: a decision older than the rollback is what it undid.
    if (live.rollback && desired!.at <= live.rollback.at) return { action: "skip", why: "rolled-back" };
    if (wish.appRevision !== decided) return { action: "skip", why: "other-settings" };
    settingsOnly = true;
  }
  const appRevision = decided ?? wish.appRevision;

  for (const deploy of facts.pending) {
    if (!sameCommits(deploy.components, components)) continue;
    if (deploy.status === "queued") return { action: "skip", why: "queued" };
    // Running with older settings: one more deploy after it brings the new ones.
    if (deploy.appRevision === null || deploy.appRevision === appRevision) {
      return { action: "skip", why: "active" };
    }
  }

  const lastOfThese = facts.finished.find(
    (d) => sameCommits(d.components, components) && (d.appRevision === null || d.appRevision === appRevision),
  );
  if (lastOfThese && lastOfThese.status !== "succeeded") return { action: "skip", why: "failed" };
  if (settingsOnly) {
    // Rule 4: this decision was tried already, and another server's settings ran it.
    const tried = facts.finished.find(
      (d) => sameCommits(d.components, components) && d.createdAt >= desired!.at,
    );
    if (tried && tried.appRevision !== null && tried.appRevision !== appRevision) {
      return { action: "skip", why: "other-settings" };
    }
  }

  const target: AutoTarget = {
    components,
    appRevision,
    settingsOnly,
    rolledBackFrom: settingsOnly && held ? live!.rollback!.from : null,
  };
  const queuedAutomatic = facts.pending.find((d) => d.status === "queued" && d.automatic);
  if (queuedAutomatic) return { action: "replace", deployId: queuedAutomatic.id, ...target };
  const last = facts.lastAutomaticAt;
  if (wish.minIntervalMs !== undefined && wish.now !== undefined && last) {
    const until = Date.parse(last) + wish.minIntervalMs;
    if (until > Date.parse(wish.now)) {
      return { action: "skip", why: "interval", until: new Date(until).toISOString() };
    }
  }
  return { action: "create", ...target };
}

/** Equal commits whatever the key order. */
export function sameCommits(a: Components, b: Components): boolean {
  const keys = Object.keys(a);
  return keys.length === Object.keys(b).length && keys.every((key) => a[key] === b[key]);
}
