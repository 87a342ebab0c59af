import { MAX_PREFETCH_BLOBS } from "../../agent/protocol.js";
import type { PrefetchGrant, PrefetchGrants } from "../../artifacts/prefetch-grants.js";
import type { BlobSource, HostLog, HostOps, PrefetchBlob } from "./host-ops.js";

/**
 * Staging that starts while the artifact is still being built (issue 15):
 * as blobs become readable from the artifact store, each target agent is
 * offered them in `prefetch` calls (agent protocol 3) and downloads those it
 * lacks into its blob cache; the stage call that follows finds them there.
 *
 * Best-effort: a host whose prefetch fails, or that cannot take one (an
 * older agent, a host another server holds, not connected), is simply left
 * to staging; nothing here fails or slows the deploy. Bounded: at most
 * CALLS_IN_FLIGHT calls per host, each of at most MAX_PREFETCH_BLOBS blobs
 * or CALL_BYTES bytes; what is offered while those run waits and goes in the
 * next call. Once the artifact is whole (finish) nothing new is sent (the
 * stage call names everything); calls in flight run on, and the agent's
 * staging waits for them. The deploy's signal (cancel, shutdown) aborts them.
 */
const CALLS_IN_FLIGHT = 2;
const CALL_BYTES = 64 * 1024 * 1024;

export interface PrefetchTarget {
  hostId: number;
  name: string;
  ops(): HostOps | undefined;
}

interface HostState {
  target: PrefetchTarget;
  pending: PrefetchBlob[];
  inFlight: number;
  /** No more calls to this host (it cannot take them, or one failed). */
  off: boolean;
  calls: number;
  fetched: number;
  bytes: number;
  cached: number;
}

export interface FleetPrefetchOptions {
  app: string;
  grants: PrefetchGrants;
  targets: PrefetchTarget[];
  log: HostLog;
  signal: AbortSignal;
}

/** Agents fetch with their own HTTP source; the orchestrator's source is for SSH hosts. */
const UNUSED_SOURCE: BlobSource = {
  open: () => Promise.reject(new Error("prefetch: agents download blobs themselves")),
};

export class FleetPrefetch {
  private readonly hosts: HostState[];
  private readonly grant: PrefetchGrant;
  private readonly controller = new AbortController();
  private finished = false;
  /** The deploy is over: its log takes no more lines from here. */
  private stopped = false;
  private closed = false;
  private readonly onAbort = () => this.controller.abort(this.options.signal.reason);
  private idle: (() => void) | undefined;

  constructor(private readonly options: FleetPrefetchOptions) {
    this.grant = options.grants.open();
    this.hosts = options.targets.map((target) => ({
      target,
      pending: [],
      inFlight: 0,
      off: false,
      calls: 0,
      fetched: 0,
      bytes: 0,
      cached: 0,
    }));
    if (options.signal.aborted) this.controller.abort(options.signal.reason);
    else options.signal.addEventListener("abort", this.onAbort, { once: true });
  }

  /** Blobs readable from the store now: each host still taking prefetches is offered them. */
  offer(blobs: readonly PrefetchBlob[]): void {
    if (this.finished || this.controller.signal.aborted || blobs.length === 0) return;
    // Exactly the two fields the protocol takes (callers pass manifest entries too).
    const plain = blobs.map((b) => ({ sha256: b.sha256, size: b.size }));
    for (const host of this.hosts) {
      if (host.off) continue;
      host.pending.push(...plain);
      this.pump(host);
    }
  }

  /**
   * The artifact is whole (or its build failed): nothing more is sent, what
   * waited is dropped, and the calls in flight finish on their own; the
   * grant closes after them. Says per host what was prefetched.
   */
  finish(): void {
    if (this.finished) return;
    this.finished = true;
    for (const host of this.hosts) host.pending = [];
    this.closeWhenIdle();
  }

  /** The deploy is over: calls still in flight are cancelled (the agent drops what it had not fetched). */
  stop(): void {
    this.stopped = true;
    this.finish();
    this.controller.abort(new Error("the deploy has finished"));
  }

  /** Resolves when no call is in flight any more (tests and benchmarks; the deploy does not wait). */
  settled(): Promise<void> {
    if (this.hosts.every((h) => h.inFlight === 0)) return Promise.resolve();
    return new Promise((resolve) => {
      const previous = this.idle;
      this.idle = () => {
        previous?.();
        resolve();
      };
    });
  }

  private pump(host: HostState): void {
    while (!host.off && host.inFlight < CALLS_IN_FLIGHT && host.pending.length > 0 && !this.finished) {
      const batch = takeBatch(host.pending);
      const ops = host.target.ops();
      if (!ops?.prefetch) {
        host.off = true;
        host.pending = [];
        return;
      }
      // Readable under the grant before the agent can ask for them.
      this.grant.offer(
        host.target.hostId,
        batch.map((b) => b.sha256),
      );
      host.inFlight++;
      host.calls++;
      ops
        .prefetch(this.options.app, this.grant.id, batch, UNUSED_SOURCE, this.controller.signal)
        .then(
          (result) => {
            if (result === null) {
              // An older agent (or one held by another server): staging does it all.
              host.off = true;
              host.pending = [];
              return;
            }
            host.fetched += result.fetched;
            host.bytes += result.bytes;
            host.cached += result.cached;
          },
          (error: unknown) => {
            if (!host.off && !this.controller.signal.aborted) {
              this.options.log(
                `==> prefetch to ${host.target.name} failed (staging fetches what it lacks): ${(error as Error).message}`,
              );
            }
            host.off = true;
            host.pending = [];
          },
        )
        .finally(() => {
          host.inFlight--;
          this.pump(host);
          this.closeWhenIdle();
        });
    }
  }

  private closeWhenIdle(): void {
    if (this.hosts.some((h) => h.inFlight > 0)) return;
    const idle = this.idle;
    this.idle = undefined;
    idle?.();
    if (!this.finished || this.closed) return;
    this.closed = true;
    this.grant.close();
    this.options.signal.removeEventListener("abort", this.onAbort);
    if (this.options.signal.aborted || this.stopped) return;
    for (const host of this.hosts) {
      if (host.fetched + host.cached === 0) continue;
      this.options.log(
        `==> prefetched to ${host.target.name} while the artifact was built: ${host.fetched} blob(s), ${host.bytes} bytes (${host.cached} there already)`,
      );
    }
  }
}

/** The first blobs of `pending` that fit one call (removed from it). */
function takeBatch(pending: PrefetchBlob[]): PrefetchBlob[] {
  let count = 0;
  let bytes = 0;
  while (count < pending.length && count < MAX_PREFETCH_BLOBS) {
    const size = pending[count]!.size;
    if (count > 0 && bytes + size > CALL_BYTES) break;
    bytes += size;
    count++;
  }
  return pending.splice(0, count);
}
