import type { ConfigProblem, ConfigSnapshot } from "../domain/app-config.js";

/**
 * Where the app manifests come from: a directory (the default) or a git
 * repository (configuration as code). Both take or refuse each app on its
 * own (snapshot-builder.ts): an app whose manifest became invalid keeps its
 * last valid version, and the problem is reported.
 */
export interface ConfigStatus {
  source: { kind: "dir"; path: string } | { kind: "git"; url: string; branch: string };
  /** The active configuration's revision: `dir-<hash>` or the config repository's commit SHA; "" before the first load. */
  revision: string;
  loadedAt: string;
  /** Problems of the active configuration's manifests (each app with a problem keeps its last valid version, if any). */
  problems: ConfigProblem[];
  /** The last head commit of a configuration repository that could not be read at all, while it is the head. */
  lastError: { revision: string; at: string; problems: ConfigProblem[] } | null;
  /** Manifests being parsed whose app is not served yet (at start, or a new file): deploys of it wait. */
  loading: { app: string; file: string }[];
}

/** What loading has cost so far: files read and manifests parsed (by the worker thread). */
export interface ConfigLoadStats {
  reads: number;
  parses: number;
}

export interface ConfigProvider {
  current(): ConfigSnapshot;
  /** Looks for a new configuration; resolves true when the active one changed. */
  refresh(): Promise<boolean>;
  /** Resolves once the first load is complete (at start it may outlast the start-up wait). */
  loaded(): Promise<void>;
  status(): ConfigStatus;
  stats(): ConfigLoadStats;
  /**
   * Called after the active configuration changed, with the previous and the
   * new one. The first load is not a change: it completes what start-up began.
   */
  onChange(listener: (previous: ConfigSnapshot, next: ConfigSnapshot) => void): () => void;
}

/** The configuration before anything was loaded: no apps, no revision. */
export function emptySnapshot(): ConfigSnapshot {
  return { revision: "", apps: new Map(), problems: [], loadedAt: new Date().toISOString() };
}

/** Resolves true if `promise` settled within `ms`, false otherwise (it keeps running). */
export function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  return Promise.race([
    promise.then(
      () => true,
      () => true,
    ),
    timeout,
  ]).finally(() => clearTimeout(timer));
}
