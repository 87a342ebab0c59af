import type { CommitSummary, DeployStatus, Trigger } from "./deploy.js";
import type { HostStep } from "./fleet.js";

/**
 * The shapes of what the web dashboard reads beyond deploys and releases:
 * timelines, host histories, deploy readiness, rollback previews and change
 * hints. Types only, so that the browser's code can share them with the
 * server (web/ imports them with `import type`).
 */

/** One step of a deploy's timeline: the phase it entered, its status then, and when. */
export interface PhaseEntry {
  phase: string;
  status: string;
  at: string;
}

/** One fleet deploy as one host lived it: what it was sent, how far it got, and the deploy's outcome. */
export interface HostHistoryEntry {
  deployId: number;
  app: string;
  env: string;
  number: number;
  status: DeployStatus;
  trigger: Trigger;
  user: string;
  sha: string;
  commit: CommitSummary | null;
  /** The release the host was sent (host release id) and the one it ran before. */
  releaseId: string;
  previousRelease: string | null;
  step: HostStep;
  switched: boolean;
  /** When the host's `current` moved to this release (null: it never did, or before this was recorded). */
  switchedAt: string | null;
  /** A rollback: the deploy number whose release it brought back. */
  rollbackOf: number | null;
  /** A reconcile the server started by itself (`self_heal`). */
  selfHeal: boolean;
  error: string | null;
  startedAt: string | null;
  finishedAt: string | null;
  updatedAt: string;
}

/**
 * Why a deploy would be refused or held now. The list is meant to grow:
 * deploy windows will add theirs.
 */
export type ReadinessCode =
  | "no_permission"
  | "locked"
  | "deploying"
  | "queued"
  | "checks_failing"
  | "checks_pending"
  | "checks_unknown"
  | "check_command"
  /** The environment takes promoted releases only (`promote_from`): a direct deploy needs an admin and a reason. */
  | "promotion_required"
  // Deploy windows and commit locks (domain/deploy-guards.ts): forcible by a deployer, with a reason.
  | "outside_window"
  | "commit_locked";

export interface ReadinessReason {
  code: ReadinessCode;
  /** The request would be refused now, or the deploy would fail at its gate. */
  blocking: boolean;
  /** An admin may deploy past it with `force` (locks). */
  forcible: boolean;
  message: string;
  details?: Record<string, unknown>;
}

export interface DeployReadiness {
  /** No blocking reason. */
  ready: boolean;
  /** The ref asked about (default: the environment's branch) and the commit it names in the mirror now. */
  ref: string;
  sha: string | null;
  reasons: ReadinessReason[];
}

/** A release as a rollback preview shows it. */
export interface PreviewRelease {
  releaseId: number;
  deployId: number;
  deployNumber: number;
  sha: string;
  components: Record<string, string>;
  commit: CommitSummary | null;
  user: string;
  trigger: Trigger;
  createdAt: string;
  configRevision: string;
}

export interface RollbackPreview {
  /** An interrupted fleet deploy is repaired: its switched hosts go back to the environment's release. */
  repair: boolean;
  /** The release brought back. */
  target: PreviewRelease;
  current: PreviewRelease | null;
  /** Every release live after the target, newest first: what the rollback undoes. */
  undone: PreviewRelease[];
  /** Per component, the commits that leave with them (newest first, at most 100). */
  commits: { component: string; from: string; to: string; commits: CommitSummary[]; truncated: boolean }[];
}

/**
 * What changed, for live pages: small hints that say what to read again,
 * never the data itself.
 */
export type Change =
  | {
      type: "deploy";
      app: string;
      env: string;
      deployId: number;
      number: number;
      status: DeployStatus;
      phase: string | null;
    }
  | { type: "lock"; app: string; env: string; locked: boolean }
  | { type: "undeployed"; app: string; env: string }
  /** A run of the app's release pipeline opened, moved or ended. */
  | { type: "pipeline"; app: string }
  /** A host connected, disconnected or reported what it holds. */
  | { type: "hosts" };
