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
 * restart and health-check it. Between servers sharing one PostgreSQL this
 * is one routed call (host-call-router.ts, op ACTIVATE_OP) that the holding
 * server runs as three agent calls of its own, instead of three routed calls
 * each with its insert, claim, outcome and notifications: the routing was
 * most of a routed host's server CPU (docs/benchmarks.md, "Control plane at
 * scale"). It is a call between servers only; agents never see it, so the
 * agent protocol does not change.
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

/** The op name of an activation in host_calls; not a HostOp (agents never receive it). */
export const ACTIVATE_OP = "activate";

/** Told once, as soon as the switch is done, before the restart: the deploy records the host switched. */
export type OnSwitched = (previous: string | null) => void;

// Built from the agent protocol's own checks, so an activation accepts exactly what its three calls do.
const switchArgs = callArgs.switchTo.shape;
export const activationArgs = z.strictObject({
  app: switchArgs.app,
  path: switchArgs.path,
  releaseId: switchArgs.releaseId,
  slot: switchArgs.slot,
  restart: z.optional(
    z.strictObject({
      argv: callArgs.run.shape.argv,
      env: callArgs.run.shape.env,
      timeoutMs: callArgs.run.shape.timeoutMs,
    }),
  ),
  health: z.optional(callArgs.health.shape.check),
});
export type ActivationArgs = z.infer<typeof activationArgs>;

export const activationResult = z.strictObject({
  previous: callResults.switchTo.shape.previous,
  failure: z.optional(z.string()),
});

/** The progress report of an activation (a line of kind "progress" in host_call_lines). */
export const activationProgress = z.strictObject({ previous: callResults.switchTo.shape.previous });

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
 * The activation as single operations on `ops`, in order; what the holding
 * server runs for a routed activation. Stops at the first step that fails.
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
