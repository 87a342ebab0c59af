import type { CallArgs, CallResult, HostOp } from "../../agent/protocol.js";
import {
  type ActivationResult,
  type ActivationSpec,
  activationArgsOf,
  activationTimeoutMs,
  type OnSwitched,
} from "./activation.js";
import { type AgentCallTiming, AgentHostOps } from "./agent-host-ops.js";
import type { HostCallRouter } from "./host-call-router.js";
import type { HostLog, PrefetchResult } from "./host-ops.js";

/**
 * HostOps for an agent that another server holds (PostgreSQL only): the
 * same operations, timeouts and results as AgentHostOps, each one a routed
 * call (host-call-router.ts) made for one deploy, whose lease the holder
 * checks before it executes anything. Bound to the holder it was made for:
 * when the agent moves, the call fails E_UNAVAILABLE and the orchestrator
 * asks for the host's operations again, which then go where it is now.
 */
export class RemoteHostOps extends AgentHostOps {
  constructor(
    name: string,
    private readonly holder: string,
    private readonly deployId: number,
    private readonly router: HostCallRouter,
    timing: AgentCallTiming,
  ) {
    super(name, () => undefined, timing);
  }

  /**
   * No prefetch through another server: the agent would download from the
   * server that holds it, which neither knows the grant nor has the blobs of
   * an artifact still being built here (see docs/architecture.md).
   */
  override prefetch(): Promise<PrefetchResult | null> {
    return Promise.resolve(null);
  }

  /**
   * Switch, restart and health check as one routed call: the holder makes
   * them as one agent call (or three, to an older agent) and answers once
   * (activation.ts). Its timeout is the sum of theirs.
   */
  override activate(
    spec: ActivationSpec,
    log: HostLog,
    signal: AbortSignal,
    onSwitched: OnSwitched,
  ): Promise<ActivationResult> {
    return this.router.activate(this.holder, this.deployId, this.name, activationArgsOf(spec), {
      timeoutMs: activationTimeoutMs(spec, this.timing),
      log,
      signal,
      onSwitched,
    });
  }

  protected override call<Op extends HostOp>(
    op: Op,
    args: CallArgs<Op>,
    timeoutMs: number,
    log?: HostLog,
    signal?: AbortSignal,
  ): Promise<CallResult<Op>> {
    return this.router.call(this.holder, this.deployId, this.name, op, args, { timeoutMs, log, signal });
  }
}
