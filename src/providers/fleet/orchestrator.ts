import type { ArtifactManifest } from "../../domain/artifact.js";
import type { Deploy } from "../../domain/deploy.js";
import { formatDuration } from "../../domain/duration.js";
import { isTurnoutError } from "../../domain/errors.js";
import {
  type AppTarget,
  amountOf,
  appTarget,
  type FleetDeployConfig,
  failureBudget,
  type HostStep,
  inventoryOf,
  planBatches,
} from "../../domain/fleet.js";
import { interruptionOf } from "../../domain/interruption.js";
import type { FleetStore } from "../../store/fleet.js";
import type { ActivationResult, ActivationSpec } from "./activation.js";
import type { BlobSource, HostLog, HostOps, StageResult, StageSpec } from "./host-ops.js";

/**
 * One fleet deploy, host by host, the way DESIGN.md describes it: stage on
 * every target (bounded concurrency); more staging failures than the budget →
 * stop with nothing switched; otherwise depool the failed hosts and switch the
 * canary, restart, health-check, bake, maybe wait for approval; then the rest
 * in batches. Failures past the budget after switching began → every switched
 * host goes back to its previous release and the deploy fails E_ROLLED_BACK.
 * Each step of each host is recorded (store.fleet) before and after it runs,
 * so a crash leaves a record of exactly which hosts were switched. A cancel
 * switches hosts back; an interruption (the server shutting down) does
 * nothing more to any host, exactly as a crash would, and leaves the repair
 * to `turnout rollback` (see leftAsIs).
 */
export interface FleetTarget {
  hostId: number;
  name: string;
  /** Out of the pool since an earlier deploy: a healthy switch here puts it back (see repool). */
  depooled: boolean;
  /** The host's operations now (an agent may reconnect: ask again after a failure). */
  ops(): HostOps | undefined;
  /**
   * false: ops() never changes (an SSH host: its next operation just connects again),
   * so a failed operation is tried once more at once instead of after
   * waiting for a reconnection that cannot come. Default true (agents).
   */
  reconnects?: boolean;
}

export interface OrchestrateInput {
  deploy: Deploy;
  releaseId: string;
  /** The artifact's digest: what the hosts are sent (and may then download). */
  artifact: string;
  manifest: ArtifactManifest;
  blobs: BlobSource;
  config: FleetDeployConfig;
  /** "current", or a named slot (no restart or health check then: nothing serves from it yet). */
  slot: string;
  targets: FleetTarget[];
  /** Repairs (reconcile, rollback after an interrupted deploy) leave hosts already on the release alone. */
  skipHostsOnRelease: boolean;
  fleet: FleetStore;
  log: HostLog;
  /** Where one host's lines go: a channel of the deploy log of its own, masked before it is cut into lines. */
  hostLog(name: string): HostLog;
  /** Masks secrets in text stored outside the log (a host's error in the per-host record). */
  mask(text: string): string;
  signal: AbortSignal;
  env: Record<string, string>;
  /** Runs a depool/pool command on the server for a host; resolves with its exit code. */
  runOnServer(argv: string[], host: string): Promise<number>;
  /** Waits for `turnout approve|abort` (status `waiting`, phase `approval`). */
  awaitApproval(timeoutMs: number): Promise<"approved" | "aborted" | "timeout">;
  setPhase(phase: string, status?: "waiting" | "running"): Promise<void>;
  /** How long to wait for a disconnected agent to come back before counting the host failed. */
  reconnectGraceMs?: number;
  /** Told how each host's staging went (the server's metrics). */
  onStaged?: StagingObserver;
}

/** One host staged (or failed to): how long it took and how many bytes it was sent. */
export type StagingObserver = (
  host: string,
  outcome: "staged" | "failed",
  seconds: number,
  bytes: number,
) => void;

export type OrchestrateOutcome =
  | { ok: true; switched: number; skipped: number }
  | { ok: false; code: "E_STAGE_FAILED" | "E_ROLLED_BACK" | "E_NO_HOSTS" | "E_APPROVAL"; message: string }
  | { ok: false; code: "cancelled"; message: string };

/** Records a host's step (and what changed with it) in the deploy's per-host record. */
type Recorder = (
  run: HostRun,
  step: HostStep,
  extra?: Parameters<FleetStore["updateDeployHost"]>[2],
) => Promise<void>;

interface HostRun {
  target: FleetTarget;
  step: HostStep;
  previous: string | null;
  switched: boolean;
  failed: boolean;
  /**
   * The release had to be staged here (it was missing, or damaged and staged
   * again): whatever the host runs is not from this copy, so even a repair
   * switches, restarts and checks it, though `current` may already name it.
   */
  staged: boolean;
}

export async function orchestrate(input: OrchestrateInput): Promise<OrchestrateOutcome> {
  const { deploy, config, fleet, log, signal } = input;
  const strategy = config.strategy;
  if (input.targets.length === 0) {
    return { ok: false, code: "E_NO_HOSTS", message: "no hosts match this environment's fleet" };
  }
  const runs: HostRun[] = input.targets.map((target) => ({
    target,
    step: "pending",
    previous: null,
    switched: false,
    failed: false,
    staged: false,
  }));
  await fleet.addDeployHosts(
    deploy.id,
    input.targets.map((t) => ({ id: t.hostId, name: t.name })),
    input.releaseId,
  );
  const budget = failureBudget(strategy.failureLimit, runs.length);
  const failures = () => runs.filter((r) => r.failed).length;
  const hostLog = (run: HostRun) => input.hostLog(run.target.name);
  const record = (
    run: HostRun,
    step: HostStep,
    extra: Parameters<FleetStore["updateDeployHost"]>[2] = {},
  ) => {
    run.step = step;
    // A host's error may quote its output: stored masked, like the log.
    const error = typeof extra.error === "string" ? { error: input.mask(extra.error) } : {};
    return fleet.updateDeployHost(deploy.id, run.target.hostId, { step, ...extra, ...error });
  };

  // 1. Stage everywhere.
  await input.setPhase("stage");
  // The provider fills in the default (defaultStageConcurrency); unset here means all at once.
  const stageConcurrency = strategy.stageConcurrency ?? runs.length;
  log(
    `==> staging release ${input.releaseId} on ${runs.length} host(s), ${Math.min(stageConcurrency, runs.length)} at a time; failure budget ${budget}`,
  );
  // One spec for every host: agent calls serialise it once (see AgentConnection).
  const spec: StageSpec = {
    app: deploy.app,
    ...(config.path ? { path: config.path } : {}),
    releaseId: input.releaseId,
    artifact: input.artifact,
    manifest: input.manifest,
    shared: config.shared,
    ...(config.beforeSwitch ? { beforeSwitch: config.beforeSwitch } : {}),
    env: input.env,
    timeoutMs: config.timeoutMs,
  };
  // What these hosts may download from now on; nothing else is readable with their tokens.
  await fleet.sendArtifact(
    runs.map((r) => r.target.hostId),
    input.artifact,
    deploy.app,
  );
  await inParallel(runs, stageConcurrency, async (run) => {
    if (signal.aborted) return;
    await record(run, "staging");
    const began = performance.now();
    const observe = (outcome: "staged" | "failed", bytes: number) =>
      input.onStaged?.(run.target.name, outcome, (performance.now() - began) / 1000, bytes);
    try {
      const result = await withHost(input, run.target, (ops) =>
        ops.stage(spec, input.blobs, hostLog(run), signal),
      );
      run.staged = result.staged;
      observe("staged", result.bytesFetched);
      hostLog(run)(
        result.staged
          ? `${result.repaired ? "repaired" : "staged"} (${result.blobsFetched} blobs, ${result.bytesFetched} bytes fetched${manifestNote(result.manifest)})`
          : "already staged",
      );
      await record(run, "staged", { bytesFetched: result.bytesFetched });
    } catch (error) {
      run.failed = true;
      observe("failed", 0);
      hostLog(run)(`staging failed: ${messageOf(error)}`);
      await record(run, "stage_failed", { error: messageOf(error) });
    }
  });
  if (signal.aborted)
    return { ok: false, code: "cancelled", message: "cancelled before anything was switched" };
  if (failures() > budget) {
    return {
      ok: false,
      code: "E_STAGE_FAILED",
      message: `${failures()} of ${runs.length} host(s) failed to stage (budget ${budget}); nothing was switched`,
    };
  }
  for (const run of runs.filter((r) => r.failed)) await depool(input, run, hostLog(run), record);

  // 2. Switch: canary first, then batches.
  let candidates = runs.filter((r) => !r.failed);
  let skipped = 0;
  if (input.skipHostsOnRelease) {
    const onRelease: HostRun[] = [];
    for (const run of candidates) {
      const current = await currentOf(input, run.target, input.slot);
      if (current === input.releaseId && !run.staged) onRelease.push(run);
    }
    for (const run of onRelease) {
      hostLog(run)(`already on ${input.releaseId}: left alone`);
      await record(run, "healthy");
    }
    skipped = onRelease.length;
    candidates = candidates.filter((r) => !onRelease.includes(r));
  }
  const batches = planBatches(candidates, strategy);
  const canaryCount = amountOf(strategy.canary, candidates.length);
  for (const [index, batch] of batches.entries()) {
    if (interruptionOf(signal)) return leftAsIs(input, runs);
    if (signal.aborted) return rollBack(input, runs, hostLog, record, "cancelled");
    const isCanary = index === 0 && canaryCount > 0;
    await input.setPhase(
      isCanary
        ? "canary"
        : `batch ${canaryCount > 0 ? index : index + 1}/${batches.length - (canaryCount > 0 ? 1 : 0)}`,
      "running",
    );
    log(`==> ${isCanary ? "canary" : "batch"}: ${batch.map((r) => r.target.name).join(", ")}`);
    await Promise.all(batch.map((run) => switchHost(input, run, index, hostLog(run), record)));
    if (interruptionOf(signal)) return leftAsIs(input, runs);
    if (failures() > budget) return rollBack(input, runs, hostLog, record, "budget");
    if (isCanary && batches.length > 1) {
      if (strategy.bakeMs > 0) {
        log(`==> baking the canary for ${formatDuration(strategy.bakeMs)}`);
        await sleep(strategy.bakeMs, signal);
        if (interruptionOf(signal)) return leftAsIs(input, runs);
        if (signal.aborted) return rollBack(input, runs, hostLog, record, "cancelled");
      }
      if (strategy.approval) {
        await input.setPhase("approval", "waiting");
        log(
          "==> waiting for approval: turnout approve|abort " + `${deploy.app}/${deploy.env}#${deploy.number}`,
        );
        const answer = await input.awaitApproval(strategy.approvalTimeoutMs);
        if (interruptionOf(signal)) return leftAsIs(input, runs);
        if (answer !== "approved") {
          log(`==> ${answer === "aborted" ? "aborted" : "no approval in time"}: switching the canary back`);
          const outcome = await rollBack(input, runs, hostLog, record, "approval");
          return outcome.ok
            ? outcome
            : {
                ...outcome,
                code: signal.aborted ? "cancelled" : "E_APPROVAL",
                message:
                  answer === "aborted"
                    ? "aborted after the canary; the canary was switched back"
                    : "no approval before the timeout; the canary was switched back",
              };
        }
        log("==> approved");
        await input.setPhase("rollout", "running");
      }
    }
  }

  // 3. Keep the hosts tidy: old releases go, never one a slot points at. All hosts at once (as
  // many as stage at once): one after the other, each routed prune was its own insert, claim
  // and outcome statement, two of every three statements per host with three servers.
  await inParallel(
    candidates.filter((r) => !r.failed),
    stageConcurrency,
    async (run) => {
      try {
        const { removed } = await withHost(input, run.target, (ops) =>
          ops.prune(placeOf(input), config.keepReleases),
        );
        if (removed.length > 0) hostLog(run)(`pruned ${removed.join(", ")}`);
      } catch (error) {
        hostLog(run)(`prune failed (ignored): ${messageOf(error)}`);
      }
    },
  );
  return { ok: true, switched: candidates.filter((r) => r.switched).length, skipped };
}

async function switchHost(
  input: OrchestrateInput,
  run: HostRun,
  batch: number,
  log: HostLog,
  record: Recorder,
): Promise<void> {
  const { config } = input;
  await record(run, "switching", { batch });
  try {
    const serving = input.slot === "current";
    await activate(
      input,
      run,
      {
        app: placeOf(input),
        releaseId: input.releaseId,
        slot: input.slot,
        restart:
          serving && config.restart
            ? { argv: config.restart, env: input.env, timeoutMs: config.timeoutMs }
            : undefined,
        health: serving ? config.health : undefined,
      },
      log,
      record,
    );
    await record(run, "healthy");
    if (run.target.depooled && input.slot === "current") await repool(input, run, log);
  } catch (error) {
    run.failed = true;
    log(`failed: ${messageOf(error)}`);
    await record(run, "failed", { error: messageOf(error) });
    // A host that took the release but does not serve it goes back to what it
    // served before and out of the pool, whether or not the deploy goes on —
    // unless the server is shutting down: then it stays as it is, recorded
    // switched, like every other host (leftAsIs).
    if (run.switched && !interruptionOf(input.signal)) {
      await switchBack(input, run, log, record);
      await depool(input, run, log, record);
    }
  }
}

/**
 * Switches one host to the release, then restarts and health-checks it;
 * throws when it does not serve the release. A host that can do the three
 * as one exchange (reached through another server: one routed call, see
 * activation.ts) is asked so, once it is reachable, as for any operation;
 * if that exchange breaks off (the agent or the server holding it went
 * away), what is left is done one operation at a time where the host is
 * then, exactly as for any other host. Either way the host is recorded
 * switched as soon as it is, before its restart.
 */
async function activate(
  input: OrchestrateInput,
  run: HostRun,
  spec: ActivationSpec,
  log: HostLog,
  record: Recorder,
): Promise<void> {
  let atOnce: ActivationResult | undefined;
  if (!input.signal.aborted) {
    try {
      atOnce = await withHost(input, run.target, (ops) =>
        ops.activate && !run.switched
          ? activateAtOnce(input, run, ops.activate.bind(ops), spec, log, record)
          : Promise.resolve(undefined),
      );
    } catch (error) {
      if (!(isTurnoutError(error) && error.code === "E_UNAVAILABLE") || input.signal.aborted) throw error;
    }
  }
  if (atOnce) {
    if (atOnce.failure) throw new Error(atOnce.failure);
    if (spec.health) log("healthy");
    return;
  }
  if (!run.switched) {
    const { previous } = await withHost(input, run.target, (o) =>
      o.switchTo(spec.app, spec.releaseId, spec.slot),
    );
    await switched(input, run, previous, log, record);
  }
  if (spec.restart) {
    const { argv, env, timeoutMs } = spec.restart;
    const code = await withHost(input, run.target, (o) =>
      o.run(spec.app, argv, env, timeoutMs, log, input.signal),
    );
    if (code !== 0) throw new Error(`restart exited with status ${code}`);
  }
  if (spec.health) {
    const check = spec.health;
    const healthy = await withHost(input, run.target, (o) => o.health(spec.app, check, log, input.signal));
    if (!healthy) throw new Error("health check failed");
    log("healthy");
  }
}

/** One activation exchange; the host is recorded switched as soon as the holder says so. */
async function activateAtOnce(
  input: OrchestrateInput,
  run: HostRun,
  activateOn: NonNullable<HostOps["activate"]>,
  spec: ActivationSpec,
  log: HostLog,
  record: Recorder,
): Promise<ActivationResult> {
  let recording: Promise<void> = Promise.resolve();
  let recordError: unknown;
  const onSwitched = (previous: string | null) => {
    // Caught at once: the exchange may still be going on when it fails (awaited below).
    recording = switched(input, run, previous, log, record).catch((error: unknown) => {
      recordError = error;
    });
  };
  let result: ActivationResult | undefined;
  let callError: unknown;
  try {
    result = await activateOn(spec, log, input.signal, onSwitched);
  } catch (error) {
    callError = error;
  }
  await recording;
  if (recordError !== undefined) throw recordError;
  if (result === undefined) throw callError;
  return result;
}

/** The host now runs the release: recorded (with what it ran before) before anything else happens to it. */
async function switched(
  input: OrchestrateInput,
  run: HostRun,
  previous: string | null,
  log: HostLog,
  record: Recorder,
): Promise<void> {
  const { deploy } = input;
  run.previous = previous;
  run.switched = true;
  log(`switched ${input.slot} to ${input.releaseId}${previous ? ` (was ${previous})` : ""}`);
  // Asked for together: on PostgreSQL one statement, with the other hosts' of the moment (FleetHostWrites).
  await Promise.all([
    record(run, "switched", { previousRelease: previous, switched: true }),
    input.fleet.setTarget({
      hostId: run.target.hostId,
      app: deploy.app,
      env: deploy.env,
      desiredRelease: input.releaseId,
      actualRelease: input.releaseId,
      previousRelease: previous,
      deployId: deploy.id,
    }),
  ]);
}

/** Puts one switched host back on the release it ran before (and restarts it). */
async function switchBack(
  input: OrchestrateInput,
  run: HostRun,
  log: HostLog,
  record: Recorder,
): Promise<boolean> {
  if (run.previous === null) {
    log("had no previous release: left on the new one");
    return false;
  }
  try {
    // The switch back must happen even when the deploy is being cancelled.
    const never = new AbortController().signal;
    await withHost(input, run.target, (ops) => ops.switchTo(placeOf(input), run.previous!, input.slot));
    if (input.slot === "current" && input.config.restart) {
      await withHost(input, run.target, (ops) =>
        ops.run(placeOf(input), input.config.restart!, input.env, input.config.timeoutMs, log, never),
      );
    }
    await input.fleet.setTarget({
      hostId: run.target.hostId,
      app: input.deploy.app,
      env: input.deploy.env,
      desiredRelease: run.previous,
      actualRelease: run.previous,
      previousRelease: input.releaseId,
      deployId: input.deploy.id,
    });
    run.switched = false;
    await record(run, "rolled_back", { switched: false });
    log(`switched back to ${run.previous}`);
    return true;
  } catch (error) {
    log(`switching back failed: ${messageOf(error)}`);
    return false;
  }
}

/**
 * The server is shutting down and this deploy's grace is over: nothing more
 * is done to any host (switching back means restarts that may take longer
 * than the server has left). As after a crash, the record says which hosts
 * were switched, and `turnout rollback APP ENV` puts exactly those back.
 * The worker records the deploy `interrupted`.
 */
function leftAsIs(input: OrchestrateInput, runs: HostRun[]): OrchestrateOutcome {
  const switched = runs.filter((r) => r.switched).map((r) => r.target.name);
  const { app, env } = input.deploy;
  input.log(
    switched.length === 0
      ? "==> interrupted: no host was switched"
      : `==> interrupted: ${switched.length} host(s) left switched (${switched.join(", ")}); ` +
          `\`turnout rollback ${app} ${env}\` puts them back`,
  );
  return { ok: false, code: "cancelled", message: "interrupted" };
}

async function rollBack(
  input: OrchestrateInput,
  runs: HostRun[],
  hostLog: (run: HostRun) => HostLog,
  record: Recorder,
  why: "budget" | "cancelled" | "approval",
): Promise<OrchestrateOutcome> {
  const switched = runs.filter((r) => r.switched);
  const failed = runs.filter((r) => r.failed).length;
  input.log(
    `==> ${why === "budget" ? `${failed} host(s) failed, past the budget` : why === "cancelled" ? "cancelled" : "not approved"}: switching ${switched.length} host(s) back`,
  );
  await input.setPhase("rollback", "running");
  await Promise.all(switched.map((run) => switchBack(input, run, hostLog(run), record)));
  if (why === "cancelled")
    return { ok: false, code: "cancelled", message: "cancelled; switched hosts were switched back" };
  return {
    ok: false,
    code: "E_ROLLED_BACK",
    message: `${failed} of ${runs.length} host(s) failed (budget ${failureBudget(input.config.strategy.failureLimit, runs.length)}); every switched host was switched back`,
  };
}

/**
 * A depooled host that took this release and passed its checks serves
 * again: the `pool` command runs for it (on the server, like depool) and it
 * is marked pooled. A failing pool command is logged and leaves it depooled.
 */
async function repool(input: OrchestrateInput, run: HostRun, log: HostLog): Promise<void> {
  if (input.config.pool) {
    try {
      const code = await input.runOnServer(input.config.pool, run.target.name);
      if (code !== 0) {
        log(`pool command exited with status ${code}: left depooled`);
        return;
      }
    } catch (error) {
      log(`pool command failed: ${messageOf(error)}; left depooled`);
      return;
    }
  }
  await input.fleet.setPoolState(run.target.hostId, input.deploy.app, "pooled");
  run.target.depooled = false;
  log("healthy again: back in the pool");
}

async function depool(input: OrchestrateInput, run: HostRun, log: HostLog, record: Recorder): Promise<void> {
  if (input.config.depool) {
    try {
      const code = await input.runOnServer(input.config.depool, run.target.name);
      log(code === 0 ? "depooled" : `depool command exited with status ${code}`);
    } catch (error) {
      log(`depool command failed: ${messageOf(error)}`);
    }
  } else {
    log("marked depooled");
  }
  await input.fleet.setPoolState(run.target.hostId, input.deploy.app, "depooled", {
    env: input.deploy.env,
    hostName: run.target.name,
  });
  await record(run, "depooled");
}

/** Which layout on the hosts the deploy works on: <root>/<app>, or the environment's own path. */
function placeOf(input: OrchestrateInput): AppTarget {
  return appTarget(input.deploy.app, input.config.path);
}

async function currentOf(input: OrchestrateInput, target: FleetTarget, slot: string): Promise<string | null> {
  try {
    const inventory = await withHost(input, target, (ops) => ops.inventory());
    const mine = inventoryOf(inventory, input.deploy.app, input.config.path);
    return slot === "current" ? (mine?.current ?? null) : (mine?.slots[slot] ?? null);
  } catch {
    return null;
  }
}

/**
 * Runs an operation on a host; if the host's connection dropped (an agent
 * reconnecting), waits for it to come back and tries once more. Host
 * operations are idempotent (staging an existing release is a no-op,
 * switching to the same release too), so a retry is safe. A host that does
 * not reconnect (SSH) gets its second try at once: waiting the grace for it
 * only delayed every SSH failure (a changed host key, a refused connection)
 * by the whole grace.
 */
async function withHost<T>(
  input: OrchestrateInput,
  target: FleetTarget,
  op: (ops: HostOps) => Promise<T>,
): Promise<T> {
  const first = target.ops();
  if (first) {
    try {
      return await op(first);
    } catch (error) {
      if (!(isTurnoutError(error) && error.code === "E_UNAVAILABLE") || input.signal.aborted) throw error;
      if (target.reconnects === false) return op(first);
    }
  }
  const until = Date.now() + (input.reconnectGraceMs ?? 15_000);
  while (Date.now() < until && !input.signal.aborted) {
    await sleep(250, input.signal);
    const again = target.ops();
    if (again && again !== first) return op(again);
  }
  const last = target.ops();
  if (last) return op(last);
  throw new Error(`host ${target.name} is not connected`);
}

async function inParallel<T>(items: T[], limit: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const workers = Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, async () => {
    while (next < items.length) {
      const item = items[next++]!;
      await work(item);
    }
  });
  await Promise.all(workers);
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    }
    signal.addEventListener("abort", done, { once: true });
  });
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** How an agent of protocol 2 came by the manifest, for the host's log line. */
function manifestNote(how: StageResult["manifest"]): string {
  if (how === "diff") return "; manifest: difference";
  if (how === "fetched") return "; manifest: read from the server";
  return how === "full" ? "; manifest: whole" : "";
}
