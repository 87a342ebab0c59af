import * as z from "zod/mini";
import { callArgs, callResults } from "../../agent/protocol.js";
import {
  type AppTarget,
  appTarget,
  type HealthCheckConfig,
  targetApp,
  targetPath,
} from "../../domain/fleet.js";
import type { HostLog, HostOps } from "./host-ops.js";

/**
 * A host's activation: switch a slot to the release, then (slot `current`)
 * restart and health-check it, as one exchange. To an agent of protocol 4
 * it is one `activate` call (a call, a `switched` message, the result)
 * instead of three calls and their answers; between servers sharing one
 * PostgreSQL it is one routed call (host-call-router.ts, op ACTIVATE_OP)
 * that the holding server makes as that call, or as the three calls to an
 * older agent, instead of three routed calls each with its insert, claim,
 * outcome and notifications. Messages and routing were most of the
 * server's CPU per host (docs/benchmarks.md, "Control plane at scale").
 */
export interface ActivationSpec {
  app: AppTarget;
  releaseId: string;
  slot: string;
  restart?: { argv: string[]; env: Record<string, string>; timeoutMs: number } | undefined;
  health?: HealthCheckConfig | undefined;
}

/**
 * The switch happened (`previous` is what the slot pointed at); `failure`
 * says why the host does not serve the release after all (the restart's
 * exit status, a failed health check), in the words the orchestrator logs.
 * A call that could not be made (switch refused, agent gone, cancelled)
 * rejects instead, as the single operations do.
 */
export interface ActivationResult {
  previous: string | null;
  failure?: string | undefined;
}

/** The op name of an activation in host_calls: the agent call of protocol 4, or its three calls to older agents. */
export const ACTIVATE_OP = "activate";

/** Told once, as soon as the switch is done, before the restart: the deploy records the host switched. */
export type OnSwitched = (previous: string | null) => void;

// The agent protocol's own (protocol 4), built there from the checks of the three calls.
export const activationArgs = callArgs.activate;
export type ActivationArgs = z.infer<typeof activationArgs>;

export const activationResult = callResults.activate;

/** The progress report of an activation (a line of kind "progress" in host_call_lines). */
export const activationProgress = z.strictObject({ previous: callResults.switchTo.shape.previous });

/** How long an activation may take: its switch, restart and health check, each with the round trip's margin. */
export function activationTimeoutMs(
  spec: ActivationSpec,
  timing: { callTimeoutMs: number; callMarginMs: number },
): number {
  const { callTimeoutMs, callMarginMs } = timing;
  const restartMs = spec.restart ? spec.restart.timeoutMs + callMarginMs : 0;
  const health = spec.health;
  const healthMs = health ? (health.retries + 1) * (health.timeoutMs + health.intervalMs) + callMarginMs : 0;
  return callTimeoutMs + callMarginMs + restartMs + healthMs;
}

export function activationArgsOf(spec: ActivationSpec): ActivationArgs {
  const path = targetPath(spec.app);
  return {
    app: targetApp(spec.app),
    ...(path === undefined ? {} : { path }),
    releaseId: spec.releaseId,
    slot: spec.slot,
    ...(spec.restart ? { restart: spec.restart } : {}),
    ...(spec.health ? { health: spec.health } : {}),
  };
}

export function activationSpecOf(args: ActivationArgs): ActivationSpec {
  return {
    app: appTarget(args.app, args.path),
    releaseId: args.releaseId,
    slot: args.slot,
    restart: args.restart,
    health: args.health,
  };
}

/**
 * The activation as single operations on `ops`, in order: what an agent of
 * protocol 4 runs for an `activate` call, and what a server runs for an
 * older agent. Stops at the first step that fails.
 */
export async function runActivation(
  ops: HostOps,
  spec: ActivationSpec,
  log: HostLog,
  signal: AbortSignal,
  onSwitched: OnSwitched,
): Promise<ActivationResult> {
  const { previous } = await ops.switchTo(spec.app, spec.releaseId, spec.slot);
  onSwitched(previous);
  if (spec.restart) {
    const { argv, env, timeoutMs } = spec.restart;
    const code = await ops.run(spec.app, argv, env, timeoutMs, log, signal);
    if (code !== 0) return { previous, failure: `restart exited with status ${code}` };
  }
  if (spec.health) {
    const healthy = await ops.health(spec.app, spec.health, log, signal);
    if (!healthy) return { previous, failure: "health check failed" };
  }
  return { previous };
}
