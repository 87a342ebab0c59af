import type { ConfigProblem } from "../domain/app-config.js";
import type {
  Change,
  DeployReadiness,
  HostHistoryEntry,
  PhaseEntry,
  PreviewRelease,
  ReadinessReason,
  RollbackPreview,
} from "../domain/dashboard.js";
import type { CommitSummary, Deploy, PromotedFrom } from "../domain/deploy.js";
import type { DayStats, EnvironmentStats } from "../domain/deploy-stats.js";
import type { Emergency } from "../domain/emergency.js";
import type { HostKind, HostStep, HostWithApps } from "../domain/fleet.js";
import type { Lock } from "../domain/lock.js";
import type { Release } from "../domain/release.js";
import type { Role } from "../domain/roles.js";

/**
 * The JSON shapes of API v1 responses: one source of truth for the server's
 * serializers and the web UI (which imports this file with `import type`,
 * so it may only depend on domain/ types, never on code with I/O).
 */
export type {
  Change,
  CommitSummary,
  DayStats,
  DeployReadiness,
  EnvironmentStats,
  HostHistoryEntry,
  Lock,
  PhaseEntry,
  PreviewRelease,
  ReadinessReason,
  Role,
  RollbackPreview,
};

export type DeployJson = Deploy & { label: string; url: string };

export interface CurrentJson {
  releaseId: number;
  deployId: number;
  deployNumber: number;
  sha: string;
  fingerprint: string;
  createdAt: string;
}

export interface EnvSummaryJson {
  app: string;
  name: string;
  branch: string;
  autoDeploy: boolean;
  provider: string;
  lock: Lock | null;
  current: CurrentJson | null;
  /** The current release is an emergency change nobody reviewed (until a normal deploy replaces it); null otherwise. */
  unreviewed: Emergency | null;
  active: DeployJson | null;
  queued: number;
}

export interface AppSummaryJson {
  name: string;
  repo: string;
  environments: EnvSummaryJson[];
}

/** What changed in one component between a release and the one live before it. */
export interface ComponentChange {
  component: string;
  /** null: the component was not part of the earlier release (or there was none). */
  from: string | null;
  to: string | null;
}

export type ReleaseJson = Omit<Release, "environmentConfig"> & {
  deploy: {
    number: number;
    ref: string;
    user: string;
    trigger: string;
    startedAt: string | null;
    finishedAt: string | null;
    /** The primary component's commit described (null: not recorded). */
    commit: CommitSummary | null;
    /** A promotion: the environment and deploy its release came from. */
    promotedFrom: PromotedFrom | null;
    /** Why, as the requester said. */
    reason: string | null;
  };
  /** Components whose commit differs from the release live before this one. */
  changes: ComponentChange[];
  /** Whether the settings (per-app revision) differ from the release live before this one. */
  configChanged: boolean;
};

/** `GET /api/v1/me`: who the caller is, so a client can hide what the role may not do. */
export interface MeJson {
  name: string;
  role: Role;
  /** null: every app. */
  apps: string[] | null;
  /** May deploy, cancel, lock (deployer or admin). */
  canDeploy: boolean;
  /** May force past locks and manage tokens (admin for every app). */
  canAdmin: boolean;
  /** A browser sign-in: the token expires by itself, and signing out revokes it. */
  session: boolean;
  expiresAt: string | null;
}

/** `GET /api/v1/overview`: every visible app × environment, with what the first screen shows. */
export interface OverviewJson {
  apps: OverviewAppJson[];
  problems: ConfigProblem[];
  /** When the server read it. */
  at: string;
}

export interface OverviewAppJson {
  name: string;
  repo: string;
  environments: OverviewEnvJson[];
}

export interface OverviewEnvJson extends Omit<EnvSummaryJson, "current" | "active"> {
  current: (CurrentJson & { commit: CommitSummary | null; user: string; finishedAt: string | null }) | null;
  active: OverviewActiveJson | null;
  /** Commits on the branch not deployed here (null: not counted yet, or counted before the last deploy). */
  undeployed: { count: number; truncated: boolean; newestSha: string | null; checkedAt: string } | null;
  /** The newest finished deploy (null: none yet): a failed one colours the environment red. */
  lastFinished: {
    id: number;
    number: number;
    status: "succeeded" | "failed" | "cancelled";
    finishedAt: string | null;
    errorMessage: string | null;
  } | null;
  /** Fleets: the environment's hosts at a glance (null: not a fleet). */
  fleet: { total: number; connected: number; drifted: number; depooled: number } | null;
}

export interface OverviewActiveJson extends DeployJson {
  /** The median run time of the environment's last succeeded deploys (null: none yet). */
  typicalDurationMs: number | null;
  /** Fleets: hosts done (switched, healthy, or left alone) out of those in the deploy. */
  hosts: { total: number; done: number; failed: number } | null;
}

/** `GET /api/v1/deploys/:id`. */
export interface DeployResponseJson {
  deploy: DeployJson;
  /** The phases the deploy went through, in order, with when each began. */
  phases: PhaseEntry[];
}

/** `GET /api/v1/deploys/:id/hosts`. */
export interface DeployHostJson {
  deployId: number;
  hostId: number;
  hostName: string;
  step: HostStep;
  batch: number | null;
  releaseId: string;
  previousRelease: string | null;
  switched: boolean;
  bytesFetched: number;
  error: string | null;
  updatedAt: string;
}

/** `GET /api/v1/hosts`: a host with what it holds per app (see domain/fleet.ts for grants and labels). */
export type HostJson = HostWithApps & {
  /** When the host's own token was last used (agents). */
  tokenLastUsedAt: string | null;
  /** Agent hosts: labels are chosen by the host itself (its grant has no labels). */
  unrestricted: boolean;
};

/** `GET /api/v1/apps/:app/environments/:env/hosts`. */
export interface FleetHostJson {
  name: string;
  kind: HostKind;
  connected: boolean;
  poolState: string;
  lastSeenAt: string | null;
  current: string | null;
  desired: string | null;
  drifted: boolean;
  /** The environment's deploy path (null: <root>/<app>), the layout `current` was read from. */
  path: string | null;
}

/** `GET /api/v1/apps/:app/environments/:env/pending`. */
export interface PendingComponentJson {
  component: string;
  branch: string;
  from: string | null;
  to: string;
  commits: (CommitSummary & {
    checks: "success" | "pending" | "failure" | null;
    /** A commit lock in force on it: automatic deploys stop before it. */
    locked?: { reason: string; lockedBy: string; lockedAt: string } | null;
  })[];
  truncated: boolean;
}

/** `GET /api/v1/deploys/:id/log`. */
export interface LogPageJson {
  chunks: { offset: number; text: string }[];
  nextOffset: number;
  complete: boolean;
  status: string;
}

/** Every error body. */
export interface ErrorJson {
  error: { code: string; message: string; details?: Record<string, unknown> };
}
