/**
 * What the server keeps on disk and in its database, and what the garbage
 * collector may remove. The rules, in one place:
 *
 * An artifact (its manifest and the blobs it names) is kept when any of
 * these refers to it:
 * - the newest `releases` releases of each environment (rollback targets),
 *   the environment's current release, and the newest release of each slot;
 * - a host: what the server wants it to run and what it last ran or
 *   switched from (host_targets), and what an agent reported holding,
 *   current, slots and older releases alike (host_apps);
 * - a queued or active deploy: the artifact it was asked to install, or the
 *   one it built or reused (recorded before staging starts);
 * - nothing yet, but it was recorded less than `artifactGraceMs` ago (an
 *   upload waiting to be deployed, a build whose deploy is still going).
 * Blobs are kept when a kept artifact names them, or when they were written
 * less than `blobGraceMs` ago. Everything else goes.
 *
 * A deploy's log is kept when the deploy is among the newest `logs` deploys
 * of its environment, is younger than `logAgeMs`, or has not finished.
 */
export interface RetentionSettings {
  /** Releases per environment whose artifacts are kept (rollback targets). */
  releases: number;
  /** Artifacts no one refers to are kept this long after they were recorded. */
  artifactGraceMs: number;
  /** Files the store wrote this recently are never removed. */
  blobGraceMs: number;
  /** Deploys per environment whose logs are kept. */
  logs: number;
  /** Logs of deploys younger than this are kept, however many there are. */
  logAgeMs: number;
  /** How often the server collects on its own; 0: never (only `turnout gc`). */
  gcIntervalMs: number;
  /** Also collect once this many deploys finished since the last collection; 0: not on a count. */
  gcAfterDeploys: number;
}

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

export const DEFAULT_RETENTION: RetentionSettings = {
  releases: 10,
  artifactGraceMs: DAY,
  blobGraceMs: HOUR,
  logs: 500,
  logAgeMs: 90 * DAY,
  gcIntervalMs: HOUR,
  gcAfterDeploys: 50,
};

/**
 * A pack whose live blobs take at most this share of its bytes is rewritten
 * with only those; above it, the pack is kept as it is (its dead blobs with
 * it) until enough of it is dead. Rewriting copies the live bytes, so a pack
 * still mostly in use is not worth it: at half, the copy is never larger
 * than what it frees.
 */
export const REPACK_AT_LIVE_SHARE = 0.5;

export type PackFate = "keep" | "rewrite" | "remove";

export function packFate(liveBytes: number, totalBytes: number, liveBlobs: number): PackFate {
  if (liveBlobs === 0) return "remove";
  return liveBytes <= totalBytes * REPACK_AT_LIVE_SHARE ? "rewrite" : "keep";
}

/** A release as the collector sees it. */
export interface ReleaseRef {
  id: number;
  app: string;
  env: string;
  /** The slot its deploy pointed (null: `current`). */
  slot: string | null;
  artifact: string;
}

/**
 * The artifacts of the newest `keep` releases of each environment and of the
 * newest release of each slot (`turnout switch` promotes it).
 */
export function releasesToKeep(releases: readonly ReleaseRef[], keep: number): Set<string> {
  const byEnv = new Map<string, ReleaseRef[]>();
  for (const release of releases) {
    const key = `${release.app}\0${release.env}`;
    const list = byEnv.get(key) ?? [];
    list.push(release);
    byEnv.set(key, list);
  }
  const kept = new Set<string>();
  for (const list of byEnv.values()) {
    list.sort((a, b) => b.id - a.id);
    for (const release of list.slice(0, keep)) kept.add(release.artifact);
    const slots = new Set<string>();
    for (const release of list) {
      if (release.slot === null || slots.has(release.slot)) continue;
      slots.add(release.slot);
      kept.add(release.artifact);
    }
  }
  return kept;
}

/** What one collection removed (or, dry, would remove), by kind. */
export interface GcAmount {
  count: number;
  bytes: number;
}

export interface GcReport {
  dryRun: boolean;
  startedAt: string;
  finishedAt: string;
  removed: {
    /** Artifact records and their manifests. */
    artifacts: GcAmount;
    /** Loose blob files (file contents; manifests counted under artifacts too). */
    blobs: GcAmount;
    /** Packs removed whole. */
    packs: GcAmount;
    /** Packs rewritten with their live blobs only: count, and bytes freed. */
    repacked: GcAmount;
    /** Temp files left by interrupted writes. */
    temp: GcAmount;
    /** Deploy logs removed (count: deploys; bytes: log text). */
    logs: GcAmount;
    /**
     * Blobs and manifests removed from the shared store (several servers on
     * PostgreSQL; the other amounts are then this server's cache). Absent
     * without one.
     */
    shared?: GcAmount;
  };
  kept: {
    artifacts: number;
    /** Bytes under the artifact store after the collection (files only). */
    bytes: number;
    /** Kept artifacts whose manifest is not in this server's store (with a shared store: not in it). */
    missing: string[];
    /** Bytes in the shared store after the collection; absent without one. */
    sharedBytes?: number;
    /** Another server was collecting the shared store, so this one collected only its cache. */
    sharedSkipped?: boolean;
  };
}

export function emptyAmount(): GcAmount {
  return { count: 0, bytes: 0 };
}
