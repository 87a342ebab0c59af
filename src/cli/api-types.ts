import type { Deploy } from "../domain/deploy.js";
import type { Emergency } from "../domain/emergency.js";
import type { Lock } from "../domain/lock.js";
import type { Role } from "../domain/roles.js";

/** The shapes of API v1 responses, as the CLI reads them. */
export type DeployJson = Deploy & { label: string; url: string };

export interface CurrentRelease {
  releaseId: number;
  deployId: number;
  deployNumber: number;
  sha: string;
  fingerprint: string;
  createdAt: string;
}

export interface EnvSummary {
  app: string;
  name: string;
  branch: string;
  autoDeploy: boolean;
  provider: string;
  lock: Lock | null;
  current: CurrentRelease | null;
  /** The current release is an unreviewed emergency change. */
  unreviewed?: Emergency | null;
  active: DeployJson | null;
  queued: number;
}

export interface EnvDetail extends EnvSummary {
  queue: DeployJson[];
  recent: DeployJson[];
}

export interface AppSummary {
  name: string;
  repo: string;
  environments: EnvSummary[];
}

export interface ConfigProblemJson {
  file: string;
  line: number | null;
  field: string;
  message: string;
}

export interface AppsResponse {
  apps: AppSummary[];
  problems: ConfigProblemJson[];
}

export interface ReleaseJson {
  id: number;
  app: string;
  env: string;
  deployId: number;
  deployNumber: number;
  fingerprint: string;
  components: Record<string, string>;
  configRevision: string;
  createdAt: string;
  /** `ref`: what was asked to deploy (absent from servers before it was added). */
  deploy: {
    number: number;
    user: string;
    trigger: string;
    finishedAt: string | null;
    ref?: string;
    /** A promotion: where its release came from (absent from servers before promotions). */
    promotedFrom?: { env: string; deployId: number; deployNumber: number } | null;
    reason?: string | null;
  };
  /** Components whose commit differs from the release live before this one. */
  changes?: { component: string; from: string | null; to: string | null }[];
  configChanged?: boolean;
  /** An unreviewed emergency change (absent from servers before it was added). */
  emergency?: Emergency | null;
}

export interface PendingComponentJson {
  component: string;
  branch: string;
  from: string | null;
  to: string;
  commits: {
    sha: string;
    author: string;
    date: string;
    subject: string;
    checks: "success" | "pending" | "failure" | null;
    locked?: { reason: string; lockedBy: string; lockedAt: string } | null;
  }[];
  truncated: boolean;
}

export interface LogChunk {
  offset: number;
  text: string;
}

export interface LogResponse {
  chunks: LogChunk[];
  nextOffset: number;
  complete: boolean;
  status: string;
  /** When retention removed the log (servers before 0.1 omit it). */
  prunedAt?: string | null;
}

export interface TokenInfoJson {
  id: number;
  name: string;
  role: Role;
  apps: string[] | null;
  /** Agent tokens: the labels their hosts are granted (null: whatever a host declares). */
  labels?: string[] | null;
  /** Agent tokens: hosts enrolled with it choose their own labels. */
  unrestricted?: boolean;
  createdAt: string;
  createdBy: string;
  lastUsedAt: string | null;
  revokedAt: string | null;
}

export interface ConfigStatusJson {
  revision: string;
  loadedAt: string;
  problems: ConfigProblemJson[];
}

/** One event of GET /api/v1/audit. */
export interface AuditEventJson {
  id: number;
  at: string;
  actor: string;
  actorId: number | null;
  role: string | null;
  source: string | null;
  action: string;
  app: string | null;
  env: string | null;
  target: string | null;
  details: Record<string, unknown>;
}
