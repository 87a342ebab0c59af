import type { Readable } from "node:stream";
import type { ArtifactManifest } from "../../domain/artifact.js";
import type { AppTarget, HealthCheckConfig, HostAppInventory } from "../../domain/fleet.js";
import type { ActivationResult, ActivationSpec, OnSwitched } from "./activation.js";

/**
 * What the fleet orchestrator can do on one host. Agents (connected over
 * WebSocket) and SSH hosts implement the same operations with the same host
 * layout (DESIGN.md "Hosts and fleets"):
 *
 *   <root>/<app>/releases/<release-id>/   never changed after staging
 *   <root>/<app>/current -> releases/<id>  switched atomically (symlink to a temp name, then rename)
 *   <root>/<app>/slots/<name> -> ../releases/<id>
 *   <root>/<app>/shared/                  state that outlives releases, linked into each
 *   <root>/.turnout/blobs/<sha256>        the host's blob cache
 *
 * An environment with its own deploy path has that layout at `<path>/…`
 * instead of `<root>/<app>/…` (operations take an AppTarget: the app's
 * name, or the app and the path); the cache stays under `<root>/.turnout`.
 *
 * A half-staged release is never visible under its final name: staging
 * happens in `releases/.staging-<id>-<nonce>` and is renamed when complete.
 * Every operation validates app names, release ids, slot names and artifact
 * paths on the host side too.
 */
/**
 * Where a host's output and narration go, a line at a time. A line too long
 * for one message arrives in pieces, each but the last with `continued`:
 * the server joins them on one masked stream (engine/log-channel.ts), so a
 * secret split between two pieces is still masked.
 */
export type HostLog = (line: string, continued?: boolean) => void;

/** Where a host gets the blobs it lacks. */
export interface BlobSource {
  open(sha256: string): Promise<Readable>;
  /**
   * Optional: many blobs in one exchange (the agent's HTTP source asks the
   * server for them in one request). The stream is the blobs' bytes back to
   * back, in the order asked, with no framing: the host knows every size from
   * the manifest and verifies every digest itself, so a short, long or wrong
   * stream fails the blob it lands in.
   */
  openConcatenated?(digests: string[]): Promise<Readable>;
}

export interface StageSpec {
  app: string;
  /** The environment's own deploy path on the host (absent: `<root>/<app>`). */
  path?: string;
  releaseId: string;
  /**
   * The artifact's digest. An agent names it when it downloads the blobs: a
   * host token may read only the blobs of artifacts the server sent it.
   * (Optional for the host layout, which gets its blobs from a BlobSource.)
   */
  artifact?: string;
  manifest: ArtifactManifest;
  /** Paths inside the release replaced by links to <root>/<app>/shared/<path>. */
  shared: string[];
  /** argv run in the staged release before it is renamed into place; non-zero fails staging. */
  beforeSwitch?: string[];
  env: Record<string, string>;
  timeoutMs: number;
}

export interface StageResult {
  /** false: the release was already staged (nothing done). */
  staged: boolean;
  blobsFetched: number;
  bytesFetched: number;
  /** The release was on the host but damaged (files missing or changed): it was staged again and replaced. */
  repaired?: boolean;
  /**
   * Agents of protocol 2: the manifest as sent whole, rebuilt from a difference, or read from the
   * server (the difference's base was not on the host, or did not add up). SSH hosts: "diff" when
   * the tree was sent as a patch of the stage tar the host kept of a base release (undefined otherwise).
   */
  manifest?: "full" | "diff" | "fetched" | undefined;
}

/** A blob offered ahead of staging: its digest and size (the host checks both). */
export interface PrefetchBlob {
  sha256: string;
  size: number;
}

export interface PrefetchResult {
  /** Blobs downloaded into the cache by this call. */
  fetched: number;
  bytes: number;
  /** Blobs the cache held already, or an earlier prefetch was fetching. */
  cached: number;
}

export interface HostOps {
  readonly name: string;
  /**
   * Optional, best-effort: downloads `blobs` the host lacks into its blob
   * cache while the release is still being built, so that staging finds them
   * there. Resolves null when this host cannot take prefetches (an agent of
   * an older protocol, a host reached through another server, SSH hosts).
   */
  prefetch?(
    app: string,
    grant: string,
    blobs: PrefetchBlob[],
    source: BlobSource,
    signal: AbortSignal,
  ): Promise<PrefetchResult | null>;
  stage(spec: StageSpec, blobs: BlobSource, log: HostLog, signal: AbortSignal): Promise<StageResult>;
  /** Points `slot` ("current" or a slot name) at a staged release, atomically; returns what it pointed at before. */
  switchTo(app: AppTarget, releaseId: string, slot: string): Promise<{ previous: string | null }>;
  /** Points `current` where `slot` points, atomically; returns the previous and new targets. */
  promoteSlot(app: AppTarget, slot: string): Promise<{ previous: string | null; current: string }>;
  /**
   * Optional: switchTo, then run the restart and the health check, as one
   * exchange (a host reached through another server: one routed call instead
   * of three, see activation.ts). `onSwitched` is told once the switch is
   * done. Hosts without it get the three operations one by one.
   */
  activate?(
    spec: ActivationSpec,
    log: HostLog,
    signal: AbortSignal,
    onSwitched: OnSwitched,
  ): Promise<ActivationResult>;
  /** Runs argv in <root>/<app>/current (restart, depool, pool); resolves with the exit code. */
  run(
    app: AppTarget,
    argv: string[],
    env: Record<string, string>,
    timeoutMs: number,
    log: HostLog,
    signal: AbortSignal,
  ): Promise<number>;
  health(app: AppTarget, check: HealthCheckConfig, log: HostLog, signal: AbortSignal): Promise<boolean>;
  /** Removes all but the newest `keep` releases; never one `current` or a slot points at. */
  prune(app: AppTarget, keep: number): Promise<{ removed: string[] }>;
  /** Every app layout on the host: those under the root, and those at the deploy paths it has staged to. */
  inventory(): Promise<HostAppInventory[]>;
}
