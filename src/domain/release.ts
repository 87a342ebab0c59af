import type { Components } from "./deploy.js";
import type { Emergency } from "./emergency.js";

/** The immutable thing a deploy installed. */
export interface Release {
  id: number;
  app: string;
  env: string;
  deployId: number;
  deployNumber: number;
  /** sha256 over the commits, the per-app revision (the global one before it existed) and, for fleets, the artifact. */
  fingerprint: string;
  components: Components;
  /** The global configuration revision it was deployed under. */
  configRevision: string;
  /** The per-app revision it ran with; null for releases recorded before it existed. */
  appRevision: string | null;
  /** The environment settings the release was deployed with, so a rollback brings back exactly this. */
  environmentConfig: unknown;
  /** Fleet releases: the artifact's digest (hosts hold it as releases/<first 16 hex>). */
  artifact: string | null;
  /** The unreviewed working tree it installs (an emergency deploy's, or one a rollback brought back); null otherwise. */
  emergency: Emergency | null;
  /** Platform providers (Heroku): the platform's id of this release, which a rollback brings back. */
  providerRelease?: string | null;
  createdAt: string;
}

export interface EnvironmentState {
  app: string;
  env: string;
  currentReleaseId: number | null;
  currentDeployId: number | null;
}
