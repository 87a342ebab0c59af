import { createHash } from "node:crypto";
import type { Readable } from "node:stream";
import { TurnoutError } from "../../domain/errors.js";
import {
  type AppTarget,
  appTarget,
  type HealthCheckConfig,
  type HostAppInventory,
} from "../../domain/fleet.js";
import { deployPathConflict } from "../../domain/fleet-rules.js";
import { assertName } from "../../domain/names.js";
import type { BlobSource, HostLog, HostOps, StageResult, StageSpec } from "../../providers/fleet/host-ops.js";
import { assertArgv, assertEnv, assertTimeout } from "../host-layout/commands.js";
import { AppLayout, assertReleaseId, CURRENT } from "../host-layout/layout.js";
import { planRelease } from "../host-layout/release-plan.js";

/**
 * HostOps of a host that exists only in memory, for the agent simulator
 * (agent-simulator.ts): it answers every operation the way a real host
 * (LocalHostOps) would — same validation, same errors, same inventory — but
 * keeps its releases, pointers and blob cache as sets and maps, and writes
 * nothing. Staging takes `stageDelayMs` (standing in for the disk), commands
 * "run" for `runDelayMs` and exit 0, health checks pass.
 *
 * Blobs the host lacks are really downloaded from the server (when
 * `fetchBlobs`), their digests and sizes verified and the bytes dropped: a
 * host's download is part of the server's cost per host.
 */
export interface SimHostOptions {
  /** How long staging a release takes on this host (after its blobs are in). */
  stageDelayMs?: number;
  /** How long a command (restart, depool, pool) and a health check take. */
  runDelayMs?: number;
  /** Download the blobs of a release the host lacks (default true). */
  fetchBlobs?: boolean;
}

/** The root the simulator's hosts have, for checking deploy paths as an agent with the default root would. */
const SIM_ROOT = "/srv/turnout";

interface SimApp {
  name: string;
  /** The deploy path (undefined: <root>/<app>). */
  path: string | undefined;
  /** Where its releases are: the deploy path, or <root>/<app>. */
  dir: string;
  /** Staging order, oldest first (what prune decides by, like the real order file). */
  releases: string[];
  current: string | null;
  slots: Map<string, string>;
}

export class SimHostOps implements HostOps {
  private readonly apps = new Map<string, SimApp>();
  /** Digests of the blobs this host holds ("in its cache"). */
  private readonly blobs = new Set<string>();
  private readonly stageDelayMs: number;
  private readonly runDelayMs: number;
  private readonly fetchBlobs: boolean;

  constructor(
    readonly name: string,
    options: SimHostOptions = {},
  ) {
    this.stageDelayMs = options.stageDelayMs ?? 0;
    this.runDelayMs = options.runDelayMs ?? 0;
    this.fetchBlobs = options.fetchBlobs ?? true;
  }

  async stage(spec: StageSpec, blobs: BlobSource, log: HostLog, signal: AbortSignal): Promise<StageResult> {
    // Checked as the real host checks it, before anything "happens".
    const app = this.app(appTarget(spec.app, spec.path));
    this.claimPlace(app);
    const id = assertReleaseId(spec.releaseId);
    const plan = planRelease(spec.manifest, spec.shared ?? []);
    if (spec.beforeSwitch !== undefined) assertArgv(spec.beforeSwitch, "before_switch");
    assertEnv(spec.env);
    assertTimeout(spec.timeoutMs, "timeout");
    signal.throwIfAborted();
    if (app.releases.includes(id)) {
      log(`release ${id} is already staged`);
      return { staged: false, blobsFetched: 0, bytesFetched: 0 };
    }
    const needed = new Map<string, number>();
    for (const file of plan.files) if (!needed.has(file.sha256)) needed.set(file.sha256, file.size);
    for (const seed of plan.seeds.values()) if (!needed.has(seed.sha256)) needed.set(seed.sha256, seed.size);
    const missing = [...needed].filter(([sha256]) => !this.blobs.has(sha256));
    const total = missing.reduce((sum, [, size]) => sum + size, 0);
    log(
      `staging ${id}: ${plan.files.length} files, fetching ${missing.length} of ${needed.size} blobs (${total} bytes)`,
    );
    let bytesFetched = 0;
    if (this.fetchBlobs && missing.length > 0) {
      bytesFetched = await download(blobs, missing, signal);
      for (const [sha256] of missing) this.blobs.add(sha256);
    }
    await delay(this.stageDelayMs, signal);
    // A concurrent staging of the same release won: as on a real host, nothing more to do.
    if (app.releases.includes(id)) return { staged: false, blobsFetched: missing.length, bytesFetched };
    app.releases.push(id);
    log(`staged ${id}`);
    return { staged: true, blobsFetched: missing.length, bytesFetched };
  }

  async switchTo(target: AppTarget, releaseId: string, slot: string): Promise<{ previous: string | null }> {
    const app = this.app(target);
    const id = this.assertStaged(app, releaseId);
    if (slot === CURRENT) {
      const previous = app.current;
      app.current = id;
      return { previous };
    }
    const name = assertName("slot", slot);
    const previous = app.slots.get(name) ?? null;
    app.slots.set(name, id);
    return { previous };
  }

  async promoteSlot(target: AppTarget, slot: string): Promise<{ previous: string | null; current: string }> {
    const app = this.app(target);
    if (slot === CURRENT) throw new TurnoutError("E_VALIDATION", "promote a slot, not current itself");
    const name = assertName("slot", slot);
    const id = app.slots.get(name);
    if (id === undefined)
      throw new TurnoutError("E_NOT_FOUND", `slot ${name} of ${app.name} points at no release`);
    const previous = app.current;
    app.current = id;
    return { previous, current: id };
  }

  async run(
    target: AppTarget,
    argv: string[],
    env: Record<string, string>,
    timeoutMs: number,
    _log: HostLog,
    signal: AbortSignal,
  ): Promise<number> {
    new AppLayout(SIM_ROOT, target);
    assertArgv(argv, "command");
    assertEnv(env);
    assertTimeout(timeoutMs, "timeout");
    await delay(this.runDelayMs, signal);
    return 0;
  }

  async health(
    target: AppTarget,
    _check: HealthCheckConfig,
    _log: HostLog,
    signal: AbortSignal,
  ): Promise<boolean> {
    new AppLayout(SIM_ROOT, target);
    await delay(this.runDelayMs, signal);
    return true;
  }

  async prune(target: AppTarget, keep: number): Promise<{ removed: string[] }> {
    const app = this.app(target);
    if (!Number.isInteger(keep) || keep < 0) {
      throw new TurnoutError("E_VALIDATION", `keep must be a whole number of releases, got ${keep}`);
    }
    const pinned = new Set([app.current, ...app.slots.values()].filter((x) => x !== null));
    const kept = new Set(app.releases.slice(Math.max(0, app.releases.length - keep)));
    const removed = app.releases.filter((id) => !kept.has(id) && !pinned.has(id));
    app.releases = app.releases.filter((id) => !removed.includes(id));
    return { removed };
  }

  async inventory(): Promise<HostAppInventory[]> {
    return [...this.apps.entries()]
      .filter(([, app]) => app.releases.length > 0)
      .sort(([a], [b]) => (a < b ? -1 : 1))
      .map(([, app]) => ({
        app: app.name,
        ...(app.path ? { path: app.path } : {}),
        releases: [...app.releases],
        current: app.current,
        slots: Object.fromEntries(app.slots),
      }));
  }

  /** How many distinct blobs this host has downloaded and kept. */
  get blobCount(): number {
    return this.blobs.size;
  }

  /** One layout per app and deploy path, checked as LocalHostOps checks them (AppLayout). */
  private app(target: AppTarget): SimApp {
    const layout = new AppLayout(SIM_ROOT, target);
    // "\0" sorts an app's default place before its deploy paths.
    const key = `${layout.app}\0${layout.path ?? ""}`;
    let app = this.apps.get(key);
    if (!app) {
      app = {
        name: layout.app,
        path: layout.path,
        dir: layout.dir,
        releases: [],
        current: null,
        slots: new Map(),
      };
      this.apps.set(key, app);
    }
    return app;
  }

  /** Two apps never share a place, as on a real host (deploy-paths.ts claimPlace). */
  private claimPlace(app: SimApp): void {
    const others = [...this.apps.values()]
      .filter((other) => other.releases.length > 0)
      .map((other) => ({ app: other.name, path: other.dir }));
    const conflict = deployPathConflict(app.dir, app.name, others);
    if (conflict) {
      throw new TurnoutError("E_CONFLICT", `layout refused for app ${app.name}: ${conflict}`, {
        app: app.name,
        path: app.dir,
      });
    }
  }

  private assertStaged(app: SimApp, releaseId: string): string {
    const id = assertReleaseId(releaseId);
    if (!app.releases.includes(id)) {
      throw new TurnoutError("E_NOT_FOUND", `release ${id} of ${app.name} is not staged on ${this.name}`, {
        app: app.name,
        releaseId: id,
      });
    }
    return id;
  }
}

/**
 * Downloads `blobs` (digest, size) in one exchange where the source can
 * (the agent's HTTP source: one POST per release), else one by one; checks
 * every digest and size and drops the bytes. Returns the bytes read.
 */
async function download(
  source: BlobSource,
  blobs: [sha256: string, size: number][],
  signal: AbortSignal,
): Promise<number> {
  if (source.openConcatenated) {
    const stream = await source.openConcatenated(blobs.map(([sha256]) => sha256));
    return verifyConcatenated(stream, blobs, signal);
  }
  let bytes = 0;
  for (const blob of blobs) bytes += await verifyConcatenated(await source.open(blob[0]), [blob], signal);
  return bytes;
}

async function verifyConcatenated(
  stream: Readable,
  blobs: [sha256: string, size: number][],
  signal: AbortSignal,
): Promise<number> {
  let index = 0;
  let left = blobs[0]?.[1] ?? 0;
  let hash = createHash("sha256");
  let total = 0;
  const finishBlob = () => {
    const [sha256] = blobs[index]!;
    const got = hash.digest("hex");
    if (got !== sha256)
      throw new TurnoutError("E_VALIDATION", `blob ${sha256.slice(0, 12)}: digest ${got.slice(0, 12)}`);
    index++;
    left = blobs[index]?.[1] ?? 0;
    hash = createHash("sha256");
  };
  const onAbort = () => stream.destroy(new TurnoutError("E_UNAVAILABLE", "staging cancelled"));
  signal.addEventListener("abort", onAbort, { once: true });
  try {
    // Empty blobs at the start have nothing to wait for.
    while (index < blobs.length && left === 0) finishBlob();
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      let offset = 0;
      while (offset < chunk.length) {
        if (index >= blobs.length)
          throw new TurnoutError("E_VALIDATION", "more bytes than the blobs asked for");
        const take = Math.min(left, chunk.length - offset);
        hash.update(chunk.subarray(offset, offset + take));
        offset += take;
        left -= take;
        total += take;
        while (index < blobs.length && left === 0) finishBlob();
      }
    }
    if (index < blobs.length)
      throw new TurnoutError("E_VALIDATION", `blob ${blobs[index]![0].slice(0, 12)} cut short`);
    return total;
  } finally {
    signal.removeEventListener("abort", onAbort);
  }
}

function delay(ms: number, signal: AbortSignal): Promise<void> {
  if (ms <= 0) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const done = () => {
      signal.removeEventListener("abort", aborted);
      resolve();
    };
    const timer = setTimeout(done, ms);
    const aborted = () => {
      clearTimeout(timer);
      reject(new TurnoutError("E_UNAVAILABLE", "cancelled"));
    };
    if (signal.aborted) aborted();
    else signal.addEventListener("abort", aborted, { once: true });
  });
}
