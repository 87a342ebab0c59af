import type { ConfigStatus } from "../config/config-provider.js";
import type { AppConfig, ConfigSnapshot, EnvironmentTarget } from "../domain/app-config.js";
import type { Deploy, Trigger } from "../domain/deploy.js";
import type { CommitLock } from "../domain/deploy-guards.js";
import type { Lock } from "../domain/lock.js";
import type { PipelineRun } from "../domain/release-pipeline.js";
import type { Permission, Principal } from "../domain/roles.js";
import type { Change } from "./change-feed.js";
import type { EmergencyRequest } from "./emergency.js";
import type { FleetHostState } from "./fleet-ops.js";
import type { PipelineView, RunChoice } from "./pipeline-view.js";
import type { PromotionRequest } from "./promotion.js";
import type { DeployReadiness } from "./readiness.js";
import type { RollbackPreview } from "./rollback-preview.js";

/**
 * What the outside (http/, the scheduler, tests) may ask of the engine. Every
 * method checks the principal's permissions itself, so no caller can forget.
 *
 * Glossary: a *deploy request* is admitted (validated, ref resolved, lock
 * checked) and stored as `queued`; a *worker* later claims it under a lease and
 * runs its pipeline; *log events* announce new log bytes and state changes to
 * live followers in this process (others poll the store).
 */
export interface DeployRequest {
  app: string;
  env: string;
  /** Branch, tag, full or short SHA of the primary component; defaults to the environment's branch. */
  ref?: string | undefined;
  /** Refs of other components of a multi-repo app, by component name; the rest use their branch. */
  refs?: Record<string, string> | undefined;
  /** Fleets: point this slot instead of `current`. */
  slot?: string | undefined;
  /** Fleets: deploy this uploaded artifact (its digest) instead of building one. */
  artifact?: string | undefined;
  force?: boolean | undefined;
  /**
   * Why (recorded, and in the audit log): required to force past a deploy window, and for an admin's
   * direct deploy into an environment with `promote_from`.
   */
  reason?: string | undefined;
  params?: Record<string, unknown> | undefined;
  trigger: Trigger;
  /** An emergency deploy of a working tree (with `artifact`): engine/emergency.ts. */
  emergency?: EmergencyRequest | undefined;
}

export interface RollbackRequest {
  app: string;
  env: string;
  /** Deploy number whose release to bring back; default: the release before the current one. */
  to?: number | undefined;
  /** Only an admin may force a rollback past a lock. */
  force?: boolean | undefined;
  trigger?: Trigger | undefined;
}

/** Why the engine is asked to look at an app's repositories now. */
export type PokeSource = "poll" | "webhook" | "push" | "config";

/** A commit the next deploy would ship. */
export interface PendingCommit {
  sha: string;
  author: string;
  date: string;
  subject: string;
  /** success | pending | failure of the environment's required checks on it; null when the environment has none. */
  checks: "success" | "pending" | "failure" | null;
  /** The lock in force on this commit (automatic deploys stop before it), or null. */
  locked: { reason: string; lockedBy: string; lockedAt: string } | null;
}

export interface PendingComponent {
  component: string;
  branch: string;
  /** The environment's current release's commit (null: never deployed). */
  from: string | null;
  /** The branch head. */
  to: string;
  /** Newest first; at most 100. */
  commits: PendingCommit[];
  truncated: boolean;
}

export type DeployEvent =
  | { type: "log"; deployId: number; offset: number; text: string }
  | { type: "status"; deploy: Deploy };

export interface EngineApi {
  /**
   * An app the caller names, checked for `permission`. An app the caller may
   * not see is answered exactly like one that does not exist (E_NOT_FOUND).
   */
  app(principal: Principal, app: string, permission: Permission): AppConfig;
  /** An environment the caller names: `app`, then the environment (E_NOT_FOUND). */
  target(principal: Principal, app: string, env: string, permission: Permission): EnvironmentTarget;
  /** A deploy by id or label; one of an app the caller may not see is answered like a missing one. */
  findDeploy(
    principal: Principal,
    ref: number | { app: string; env: string; number: number },
    permission: Permission,
  ): Promise<Deploy>;
  requestDeploy(principal: Principal, request: DeployRequest): Promise<Deploy>;
  requestRollback(principal: Principal, request: RollbackRequest): Promise<Deploy>;
  /** Deploys to `to` exactly the release `from` runs (docs/delivery.md#promotion). */
  requestPromotion(principal: Principal, request: PromotionRequest): Promise<Deploy>;
  /** An app's release pipeline: stages, what each runs, each release's position and the runs between stages. */
  pipeline(principal: Principal, app: string): Promise<PipelineView>;
  /** Approves or rejects a pipeline run waiting for approval. */
  answerPipeline(
    principal: Principal,
    app: string,
    choice: RunChoice,
    answer: "approve" | "reject",
    message?: string,
  ): Promise<PipelineRun>;
  cancel(principal: Principal, deployId: number): Promise<Deploy>;
  lock(principal: Principal, app: string, env: string, reason: string): Promise<Lock>;
  unlock(principal: Principal, app: string, env: string): Promise<Lock | undefined>;
  /** Live events of one deploy in this process; returns the unsubscribe function. */
  subscribe(deployId: number, listener: (event: DeployEvent) => void): () => void;
  /** The active configuration (valid apps, problems, revision). */
  config(): ConfigSnapshot;
  /** Where the configuration comes from, its revision and the last refused one. */
  configStatus(): ConfigStatus;
  /**
   * Fetches an app's repositories now and enqueues the auto-deploys new
   * commits call for (webhooks, pushes). Resolves when that is done.
   * Concurrent pokes of one app share the work.
   */
  poke(app: string, source: PokeSource): Promise<void>;
  /** What the next deploy of an environment would ship, per component. */
  pending(principal: Principal, app: string, env: string): Promise<PendingComponent[]>;
  /** Fleets: the environment's hosts, what each runs, and whether it drifted. */
  fleetHosts(principal: Principal, app: string, env: string): Promise<FleetHostState[]>;
  /** Fleets: bring drifted hosts to the environment's release. */
  reconcile(principal: Principal, app: string, env: string): Promise<Deploy>;
  /** Fleets: make `current` point where `slot` points, on every host. */
  switchSlot(principal: Principal, app: string, env: string, slot: string): Promise<Deploy>;
  /** Fleets: answer a deploy waiting for approval after its canary. */
  answerApproval(principal: Principal, deployId: number, answer: "approved" | "aborted"): Promise<Deploy>;
  /** True once the server began to shut down: it takes no new work, running deploys finish. */
  shuttingDown(): boolean;
  /** Hints of what changed in this process (deploys, locks, undeployed commits, hosts); returns the unsubscribe function. */
  changes(listener: (change: Change) => void): () => void;
  /** Why a deploy of `ref` (default: the branch) would be refused or held now. */
  readiness(principal: Principal, app: string, env: string, ref?: string): Promise<DeployReadiness>;
  /** Commit locks of an app: in force, or with `history` the unlocked ones too. */
  commitLocks(principal: Principal, app: string, history?: boolean): Promise<CommitLock[]>;
  /** Marks a commit (full or short SHA) of an app as not deployable. */
  lockCommit(principal: Principal, app: string, sha: string, reason: string): Promise<CommitLock>;
  /** Lifts a commit lock; returns it, or undefined when none was in force. */
  unlockCommit(principal: Principal, app: string, sha: string): Promise<CommitLock | undefined>;
  /** What a rollback to deploy `to`'s release (default: the one a rollback would pick) would undo. */
  rollbackPreview(principal: Principal, app: string, env: string, to?: number): Promise<RollbackPreview>;
}
