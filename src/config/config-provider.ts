import type { ConfigProblem, ConfigSnapshot } from "../domain/app-config.js";

/**
 * Where the app manifests come from: a directory (the default) or a git
 * repository (configuration as code). Both keep the last valid configuration
 * active and report what they refused.
 */
export interface ConfigStatus {
  source: { kind: "dir"; path: string } | { kind: "git"; url: string; branch: string };
  /** The active configuration's revision: `dir-<hash>` or the config repository's commit SHA. */
  revision: string;
  loadedAt: string;
  /** Problems of the active configuration (a directory serves its valid apps and reports the rest). */
  problems: ConfigProblem[];
  /** The last configuration that was refused as a whole (git source), if the active one is older than it. */
  lastError: { revision: string; at: string; problems: ConfigProblem[] } | null;
}

export interface ConfigProvider {
  current(): ConfigSnapshot;
  /** Looks for a new configuration; resolves true when the active one changed. */
  refresh(): Promise<boolean>;
  status(): ConfigStatus;
  /** Called after the active configuration changed, with the previous and the new one. */
  onChange(listener: (previous: ConfigSnapshot, next: ConfigSnapshot) => void): () => void;
}
