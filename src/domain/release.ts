import type { Components } from "./deploy.js";

/** The immutable thing a deploy installed. */
export interface Release {
  id: number;
  app: string;
  env: string;
  deployId: number;
  deployNumber: number;
  fingerprint: string;
  components: Components;
  configRevision: string;
  /** The environment settings the release was deployed with, so a rollback brings back exactly this. */
  environmentConfig: unknown;
  /** Fleet releases: the artifact's digest (hosts hold it as releases/<first 16 hex>). */
  artifact: string | null;
  createdAt: string;
}

export interface EnvironmentState {
  app: string;
  env: string;
  currentReleaseId: number | null;
  currentDeployId: number | null;
}
