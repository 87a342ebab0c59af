import {
  ACTIVATE_PROTOCOL,
  type CallArgs,
  type CallResult,
  type HostOp,
  PREFETCH_PROTOCOL,
} from "../../agent/protocol.js";
import { TurnoutError } from "../../domain/errors.js";
import {
  type AppTarget,
  type HealthCheckConfig,
  type HostAppInventory,
  inventoryOf,
  targetApp,
  targetPath,
} from "../../domain/fleet.js";
import {
  type ActivationResult,
  type ActivationSpec,
  activationArgsOf,
  activationTimeoutMs,
  type OnSwitched,
  runActivation,
} from "./activation.js";
import type { AgentConnection } from "./agent-connection.js";
import type {
  BlobSource,
  HostLog,
  HostOps,
  PrefetchBlob,
  PrefetchResult,
  StageResult,
  StageSpec,
} from "./host-ops.js";
import type { ManifestDiffs } from "./manifest-diffs.js";

/**
 * One arguments object per stage spec, so that a fleet's hosts, which all get
 * the same spec, share its serialised form (AgentConnection serialises once
 * per arguments object).
 */
const stageArgs = new WeakMap<StageSpec, CallArgs<"stage">>();

export interface AgentCallTiming {
  /** Operations without a timeout of their own (switch, promote, prune, inventory). */
  callTimeoutMs: number;
  /** Added to an operation's own timeout, for the round trip and the agent's clean-up. */
  callMarginMs: number;
  cancelGraceMs: number;
}

/**
 * HostOps for an agent host: each method is one `call` over the agent's
 * WebSocket. It is bound to the host's name, not to one connection, so an
 * agent that reconnects serves the next call on its new connection; a call
 * in flight when the socket drops fails with E_UNAVAILABLE.
 */
export class AgentHostOps implements HostOps {
  constructor(
    readonly name: string,
    private readonly connection: () => AgentConnection | undefined,
    protected readonly timing: AgentCallTiming,
    /** Differences from manifests the agents keep (protocol 2); absent: whole manifests. */
    private readonly diffs?: ManifestDiffs,
  ) {}

  /**
   * The agent downloads the blobs itself from the server's blob endpoint; `blobs` is for SSH hosts.
   * An agent of protocol 2 that keeps a manifest of the same app gets the difference from it.
   */
  async stage(spec: StageSpec, _blobs: BlobSource, log: HostLog, signal: AbortSignal): Promise<StageResult> {
    const connection = this.connection();
    const diffArgs =
      this.diffs && connection && !connection.closed && connection.protocol >= 2
        ? await this.diffs.argsFor(spec, connection.manifests, currentOf(connection, spec.app, spec.path))
        : undefined;
    let args = diffArgs ?? stageArgs.get(spec);
    if (!args) {
      args = { spec };
      stageArgs.set(spec, args);
    }
    return this.call("stage", args, spec.timeoutMs + this.timing.callMarginMs, log, signal);
  }

  /**
   * Agents of protocol 3 download the blobs themselves, naming `grant`; older
   * ones would refuse the call (and drop the connection), so they get none.
   */
  async prefetch(
    app: string,
    grant: string,
    blobs: PrefetchBlob[],
    _source: BlobSource,
    signal: AbortSignal,
  ): Promise<PrefetchResult | null> {
    const connection = this.connection();
    if (!connection || connection.closed || connection.protocol < PREFETCH_PROTOCOL) return null;
    return this.call("prefetch", { app, grant, blobs }, this.timing.callTimeoutMs, undefined, signal);
  }

  switchTo(app: AppTarget, releaseId: string, slot: string): Promise<{ previous: string | null }> {
    return this.call("switchTo", { ...appArgs(app), releaseId, slot }, this.timing.callTimeoutMs);
  }

  promoteSlot(app: AppTarget, slot: string): Promise<{ previous: string | null; current: string }> {
    return this.call("promoteSlot", { ...appArgs(app), slot }, this.timing.callTimeoutMs);
  }

  async run(
    app: AppTarget,
    argv: string[],
    env: Record<string, string>,
    timeoutMs: number,
    log: HostLog,
    signal: AbortSignal,
  ): Promise<number> {
    const result = await this.call(
      "run",
      { ...appArgs(app), argv, env, timeoutMs },
      timeoutMs + this.timing.callMarginMs,
      log,
      signal,
    );
    return result.exitCode;
  }

  async health(
    app: AppTarget,
    check: HealthCheckConfig,
    log: HostLog,
    signal: AbortSignal,
  ): Promise<boolean> {
    const attempts = check.retries + 1;
    const budget = attempts * (check.timeoutMs + check.intervalMs) + this.timing.callMarginMs;
    return (await this.call("health", { ...appArgs(app), check }, budget, log, signal)).healthy;
  }

  /**
   * Switch, restart and health check: one `activate` call to an agent of
   * protocol 4 (its `switched` message tells `onSwitched`), the three calls
   * one by one to an older agent.
   */
  activate(
    spec: ActivationSpec,
    log: HostLog,
    signal: AbortSignal,
    onSwitched: OnSwitched,
  ): Promise<ActivationResult> {
    const connection = this.connection();
    if (!connection || connection.closed || connection.protocol < ACTIVATE_PROTOCOL) {
      return runActivation(this, spec, log, signal, onSwitched);
    }
    return connection.call("activate", activationArgsOf(spec), {
      log,
      signal,
      timeoutMs: activationTimeoutMs(spec, this.timing),
      cancelGraceMs: this.timing.cancelGraceMs,
      onSwitched,
    });
  }

  prune(app: AppTarget, keep: number): Promise<{ removed: string[] }> {
    return this.call("prune", { ...appArgs(app), keep }, this.timing.callTimeoutMs);
  }

  async inventory(): Promise<HostAppInventory[]> {
    return (await this.call("inventory", {}, this.timing.callTimeoutMs)).inventory;
  }

  /** One operation on the host; RemoteHostOps routes it through another server instead. */
  protected call<Op extends HostOp>(
    op: Op,
    args: CallArgs<Op>,
    timeoutMs: number,
    log?: HostLog,
    signal?: AbortSignal,
  ): Promise<CallResult<Op>> {
    const connection = this.connection();
    if (!connection || connection.closed) {
      return Promise.reject(
        new TurnoutError("E_UNAVAILABLE", `host ${this.name} is not connected`, { host: this.name }),
      );
    }
    return connection.call(op, args, { log, signal, timeoutMs, cancelGraceMs: this.timing.cancelGraceMs });
  }
}

/** The release `current` points at for `app` (at `path`) on the host, as it last reported. */
function currentOf(connection: AgentConnection, app: string, path: string | undefined): string | null {
  return inventoryOf(connection.inventory, app, path)?.current ?? null;
}

/** `app`, and `path` only when there is one: an agent of protocol 1 or 2 refuses keys it does not know. */
function appArgs(target: AppTarget): { app: string; path?: string } {
  const path = targetPath(target);
  return path === undefined ? { app: targetApp(target) } : { app: targetApp(target), path };
}
