import type { Emergency } from "./emergency.js";
/**
 * The deploy: one request to bring an environment to a revision.
 *
 *   queued ──▶ running ──▶ succeeded
 *     │    ╲      │   ╲──▶ failed     (with an outcome code: interrupted, timeout, …)
 *     │     ╲     ╰─────▶ cancelled
 *     │      waiting ──▶ running      (waiting: held by a gate before running)
 *     ╰────────────────▶ cancelled
 *
 * `waiting` and `running` are the active states: the schema allows at most one
 * active deploy per environment.
 */

import { notFound, type TurnoutError } from "./errors.js";

/** Where a promotion's release came from: the environment and the deploy that put it there. */
export interface PromotedFrom {
  env: string;
  deployId: number;
  deployNumber: number;
}
export const DEPLOY_STATUSES = ["queued", "waiting", "running", "succeeded", "failed", "cancelled"] as const;
export type DeployStatus = (typeof DEPLOY_STATUSES)[number];

export const ACTIVE_STATUSES: readonly DeployStatus[] = ["waiting", "running"];
export const FINISHED_STATUSES: readonly DeployStatus[] = ["succeeded", "failed", "cancelled"];

export const TRIGGERS = [
  "api",
  "cli",
  "ui",
  "auto",
  "webhook",
  "push",
  "chat",
  "rollback",
  "promote",
  "reconcile",
  "pipeline",
] as const;
export type Trigger = (typeof TRIGGERS)[number];

/**
 * Why a deploy failed. These are outcome codes stored on the deploy, distinct
 * from the E_* codes of a refused request: the request was fine, the deploy
 * did not work out.
 */
export const FAILURE_CODES = [
  "interrupted",
  "timeout",
  "idle_timeout",
  "command_failed",
  "git_failed",
  "internal",
  "E_CHECKS_FAILED",
  "E_CHECKS_TIMEOUT",
  "E_STAGE_FAILED",
  "E_ROLLED_BACK",
  "E_NO_HOSTS",
  "E_APPROVAL",
  "E_PROVIDER_FAILED",
] as const;
export type FailureCode = (typeof FAILURE_CODES)[number];

export type Components = Record<string, string>;

/** A commit as people recognise it: recorded with the deploy, so lists need no git. */
export interface CommitSummary {
  sha: string;
  subject: string;
  author: string;
  /** ISO 8601 author date. */
  date: string;
}

export interface Deploy {
  id: number;
  app: string;
  env: string;
  number: number;
  status: DeployStatus;
  /** What the deploy is doing now while active (`fetch`, `workspace`, `deploy`, …). */
  phase: string | null;
  trigger: Trigger;
  user: string;
  ref: string;
  sha: string;
  /** Every component's commit; for single-repo apps `{ main: sha }`. */
  components: Components;
  previousSha: string | null;
  params: Record<string, string>;
  force: boolean;
  /** Safeties that did not apply because of `force` or a rollback, e.g. `lock`. */
  ignoredSafeties: string[];
  /** For a rollback, the deploy number whose release it brings back. */
  rollbackOf: number | null;
  errorCode: FailureCode | null;
  errorMessage: string | null;
  releaseId: number | null;
  /** The global configuration revision (`dir-…` or the config repository's commit): which configuration it came from. */
  configRevision: string;
  /**
   * The per-app revision (domain/app-revision.ts): the settings it is meant to
   * run with until it starts, then those it runs with. Null for deploys
   * recorded before per-app revisions existed.
   */
  appRevision: string | null;
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
  cancelRequested: boolean;
  /** Fleets: the slot this deploy points (null: `current`). */
  slot: string | null;
  /** Fleets: an uploaded artifact deployed instead of building one. */
  artifact: string | null;
  /** Fleets: a deploy waiting after its canary — requested, approved or aborted. */
  approval: string | null;
  /** When retention removed this deploy's log (null: the log is kept). */
  logPrunedAt: string | null;
  /** The primary component's commit described (null until described, or when git could not). */
  commit: CommitSummary | null;
  /** Every component's commit described, by component (null until described). */
  commits: Record<string, CommitSummary> | null;
  /** A promotion: the environment and deploy whose release it installs (null: not a promotion). */
  promotedFrom: PromotedFrom | null;
  /** Why, as the requester said (a direct deploy past `promote_from` needs one). */
  reason: string | null;
  /** An emergency deploy of a working tree (domain/emergency.ts); null for every other deploy. */
  emergency: Emergency | null;
}

export function deployLabel(d: Pick<Deploy, "app" | "env" | "number">): string {
  return `${d.app}/${d.env}#${d.number}`;
}

export function isFinished(status: DeployStatus): boolean {
  return FINISHED_STATUSES.includes(status);
}

export function isActive(status: DeployStatus): boolean {
  return ACTIVE_STATUSES.includes(status);
}

const TRANSITIONS: Record<DeployStatus, readonly DeployStatus[]> = {
  queued: ["waiting", "running", "cancelled", "failed"],
  waiting: ["running", "failed", "cancelled"],
  // running → waiting: a gate (CI checks, approval) holds a claimed deploy.
  running: ["waiting", "succeeded", "failed", "cancelled"],
  succeeded: [],
  failed: [],
  cancelled: [],
};

export function canTransition(from: DeployStatus, to: DeployStatus): boolean {
  return TRANSITIONS[from].includes(to);
}

/** `shop/production#42` → parts; anything else → undefined. */
/**
 * The answer for a deploy that does not exist, or that belongs to an app the
 * caller may not see: by id or by label, as the caller asked for it.
 */
export function deployNotFound(ref: number | { app: string; env: string; number: number }): TurnoutError {
  return typeof ref === "number"
    ? notFound(`deploy ${ref}`, { id: ref })
    : notFound(`deploy ${ref.app}/${ref.env}#${ref.number}`, { ...ref });
}

export function parseDeployLabel(value: string): { app: string; env: string; number: number } | undefined {
  // App and environment follow the name rule (names.ts), length included.
  const match = /^([a-z0-9][a-z0-9-]{0,62})\/([a-z0-9][a-z0-9-]{0,62})#([0-9]{1,9})$/.exec(value);
  if (!match) return undefined;
  return { app: match[1]!, env: match[2]!, number: Number(match[3]) };
}
