import { setMaxListeners } from "node:events";
import { mkdirSync } from "node:fs";
import path from "node:path";
import type { GithubChecks } from "../checks/github-checks.js";
import type { ConfigProvider } from "../config/config-provider.js";
import { type AppConfig, appSecrets, type EnvironmentConfig } from "../domain/app-config.js";
import { appRevision } from "../domain/app-revision.js";
import { type Deploy, deployLabel } from "../domain/deploy.js";
import { formatDuration } from "../domain/duration.js";
import { isTurnoutError } from "../domain/errors.js";
import { Interruption, interruptionOf } from "../domain/interruption.js";
import { freeSlots } from "../domain/queue-policy.js";
import { SecretMasker } from "../domain/secrets.js";
import type { GitMirrors } from "../git/mirrors.js";
import type { FleetDeps } from "../providers/fleet/fleet-provider.js";
import type { Outcome } from "../store/deploys.js";
import type { Store } from "../store/store.js";
import { primarySha } from "./components.js";
import { finishWhenStored } from "./durable-finish.js";
import type { EventHub } from "./event-hub.js";
import { LogWriter } from "./log-writer.js";
import { orphanBelongsTo, ownerIsDead } from "./owner.js";
import { type PipelineOutcome, runPipeline } from "./pipeline.js";
import { sweepWorkspaces } from "./workspace-sweep.js";

/**
 * The worker loop of one server process: claims queued deploys under a lease
 * (renewed while running, and the channel through which a cancel from another
 * process arrives), runs their pipeline, records the outcome; and recovers
 * deploys whose holder died as `interrupted`, so their queue moves on.
 * When the server stops, it drains: no more claims, running deploys finish
 * within a grace period, the rest are interrupted and recorded as such.
 */
export interface WorkerOptions {
  owner: string;
  store: Store;
  config: ConfigProvider;
  git: GitMirrors;
  githubChecks: GithubChecks;
  hub: EventHub;
  dataDir: string;
  concurrency: number;
  leaseMs: number;
  killGraceMs: number;
  logFlushMs: number;
  baseEnv: Record<string, string>;
  secrets: string[];
  /** Fleet deploys' dependencies (artifacts, agents, SSH); absent: shell deploys only. */
  fleet?: FleetDeps | undefined;
  /** Told when a deploy starts and ends here, and when a dead holder's deploy is recovered. */
  events?: DeployLifecycleEvents | undefined;
  /**
   * Told when a deploy's own work is under way: its command (a shell deploy's)
   * has started, or its pipeline ended here. What can wait for that
   * (describing its commits) does not compete with the way to the command.
   * At the end, the outcome is recorded once what it returns has settled
   * (within UNDER_WAY_WAIT_MS), so a finished deploy is a described one.
   */
  underWay?: ((deployId: number) => Promise<void> | undefined) | undefined;
  report(error: unknown): void;
}

/** What the server prints about deploys (server-log.ts): one call per start, end and recovery. */
export interface DeployLifecycleEvents {
  started(deploy: Deploy): void;
  finished(deploy: Deploy): void;
  recovered(deploy: Deploy): void;
}

/** A deploy this process runs. */
interface Run {
  deploy: Deploy;
  controller: AbortController;
  /** Waiting for `turnout approve|abort`: only a person ends that, so a shutdown does not wait for it. */
  awaitingApproval: boolean;
  /** The deploy's log, once opened: a run that throws has it stored before its last line (endDefective). */
  log?: LogWriter;
}

export interface DrainOptions {
  /** How long running deploys may take to finish before they are interrupted. */
  graceMs: number;
  /** Aborted: stop waiting and interrupt now (a second signal). */
  now?: AbortSignal | undefined;
  /** Told right before deploys are interrupted, and why. */
  interrupting?: ((deploys: Deploy[], why: "grace" | "now") => void) | undefined;
}

/** How long a deploy's outcome waits for what waited for it to be under way (its commits' description). */
const UNDER_WAY_WAIT_MS = 5_000;

const APPROVAL_INTERRUPTED = "the server shut down while this deploy waited for approval";

export class Worker {
  private readonly running = new Map<number, Run>();
  private readonly finished = new Set<Promise<void>>();
  private pumping: Promise<void> | undefined;
  private pumpAgain = false;
  private stopped = true;
  /** Aborted when a shutdown stops waiting for running deploys: their ends are no longer retried. */
  private givingUp = new AbortController();
  private pollTimer: NodeJS.Timeout | undefined;
  private recoveryTimer: NodeJS.Timeout | undefined;
  private readonly workspacesDir: string;

  constructor(private readonly options: WorkerOptions) {
    this.workspacesDir = path.join(options.dataDir, "workspaces");
  }

  async start(): Promise<void> {
    mkdirSync(this.workspacesDir, { recursive: true });
    // Before the first claim: whatever is there was left by a process that is gone.
    await this.sweep();
    this.stopped = false;
    this.givingUp = new AbortController();
    await this.recover();
    this.pollTimer = setInterval(() => this.wake(), 1000);
    this.recoveryTimer = setInterval(
      () => void this.recover().catch((e) => this.options.report(e)),
      // Often enough that a dead server's deploy is taken over within lease + 2 s.
      Math.max(1000, Math.min(2000, this.options.leaseMs / 2)),
    );
    this.wake();
  }

  /** The deploys this process is running now. */
  runningDeploys(): Deploy[] {
    return [...this.running.values()].map((run) => run.deploy);
  }

  /**
   * Stops taking work: no more claims, no recovery of others' deploys. A
   * deploy waiting for approval is interrupted at once (only a person ends
   * that wait); every other running deploy goes on, renewing its lease.
   */
  stopClaiming(): void {
    this.stopped = true;
    clearInterval(this.pollTimer);
    clearInterval(this.recoveryTimer);
    for (const run of this.running.values()) {
      if (run.awaitingApproval) run.controller.abort(new Interruption(APPROVAL_INTERRUPTED));
    }
  }

  /**
   * Stops claiming, waits up to `graceMs` for the running deploys to finish
   * (less when `now` aborts: a second signal), then interrupts the rest; they
   * record `failed (interrupted)` with a closing log line. Resolves when every
   * deploy has ended.
   */
  async drain(options: DrainOptions): Promise<void> {
    this.stopClaiming();
    // A claim in flight when the drain began still starts: wait for it, so it is waited for too.
    await this.pumping;
    const ended = Promise.allSettled([...this.finished]);
    if (this.running.size > 0) {
      const waited = await waitFor(ended, options.graceMs, options.now);
      if (waited !== "ended") {
        const message =
          waited === "now"
            ? "the server was told a second time to stop and did not wait for this deploy to finish"
            : `the server shut down before this deploy finished (grace ${formatDuration(options.graceMs)})`;
        // One already stopping (cancelled, or interrupted while waiting for approval) keeps its reason.
        const stopping = [...this.running.values()].filter((run) => !run.controller.signal.aborted);
        options.interrupting?.(
          stopping.map((run) => run.deploy),
          waited,
        );
        for (const run of stopping) run.controller.abort(new Interruption(message));
        // Each records its end once; a store that does not answer is the next start's to sort out.
        this.givingUp.abort();
      }
    }
    await ended;
    await this.sweeping;
  }

  /** Stops at once: no claims, running deploys interrupted (start-up failed, or no grace). */
  async stop(): Promise<void> {
    await this.drain({ graceMs: 0 });
  }

  /** Stops a deploy this process runs at once (the store flag reaches other processes). */
  abort(deployId: number): void {
    this.running.get(deployId)?.controller.abort();
  }

  /** Nudges the loop: called on new work, finished work, and by a timer (other processes enqueue too). */
  wake(): void {
    if (this.stopped) return;
    if (this.pumping) {
      this.pumpAgain = true;
      return;
    }
    this.pumping = this.pump()
      .catch((error) => this.options.report(error))
      .finally(() => {
        this.pumping = undefined;
        if (this.pumpAgain) {
          this.pumpAgain = false;
          this.wake();
        }
      });
  }

  private async pump(): Promise<void> {
    while (!this.stopped && freeSlots(this.running.size, this.options.concurrency) > 0) {
      const deploy = await this.options.store.deploys.claimNext(this.options.owner, this.options.leaseMs);
      if (!deploy) return;
      const run: Run = { deploy, controller: new AbortController(), awaitingApproval: false };
      // A fleet deploy waits on many hosts at once, each call listening for the cancel: not a leak.
      setMaxListeners(0, run.controller.signal);
      this.running.set(deploy.id, run);
      const done = this.execute(run)
        .catch((error) => this.endDefective(run, error))
        .finally(() => {
          this.running.delete(deploy.id);
          this.finished.delete(done);
          // A deploy cleans up its own workspace; this catches what an earlier crash left.
          void this.sweep();
          this.wake();
        });
      this.finished.add(done);
    }
  }

  private sweeping: Promise<void> = Promise.resolve();

  /** Removes workspaces of deploys this process is not running (see workspace-sweep.ts); one sweep at a time. */
  private sweep(): Promise<void> {
    this.sweeping = this.sweeping.then(async () => {
      try {
        const removed = await sweepWorkspaces(
          this.workspacesDir,
          (name) => /^[0-9]+$/.test(name) && this.running.has(Number(name)),
        );
        if (removed.length > 0) {
          this.options.report(
            `removed ${removed.length} workspace(s) left by deploys that are no longer running: ${removed.join(", ")}`,
          );
        }
      } catch (error) {
        this.options.report(error);
      }
    });
    return this.sweeping;
  }

  /**
   * A deploy whose run threw: a defect, not a deploy's failure (runPipeline
   * turns those into outcomes). The record still ends, failed as `internal`,
   * rather than staying `running` with no lease renewed and no server that
   * would ever recover it (recovery leaves a live holder's deploys alone).
   */
  private async endDefective(run: Run, error: unknown): Promise<void> {
    const { store, hub } = this.options;
    this.options.report(error);
    // The deploy is no longer this server's (recovered as interrupted elsewhere): recording
    // more would contradict what was recorded.
    if (isTurnoutError(error) && error.code === "E_CONFLICT") return;
    const message = `internal error: ${(error as Error).message}`;
    // The app's secrets too, once the run knew them: the message may quote anything.
    const masker = run.log?.masker ?? new SecretMasker(this.options.secrets);
    try {
      // What the run's own log still holds goes first, so the two never write the same offsets.
      await run.log?.close().catch(() => undefined);
      const log = new LogWriter(
        run.deploy.id,
        store.logs,
        hub,
        masker,
        this.options.logFlushMs,
        await store.logs.end(run.deploy.id),
      );
      log.line(`==> failed: ${message}`);
      await log.close();
    } catch (failed) {
      // A log that cannot be stored does not keep the deploy from ending.
      this.options.report(failed);
    }
    try {
      const finished = await this.finishWhenStored(run.deploy.id, {
        status: "failed",
        errorCode: "internal",
        errorMessage: masker.mask(message),
      });
      hub.emit({ type: "status", deploy: finished });
      this.options.events?.finished(finished);
    } catch (failed) {
      // Already ended, or the lease went to a server that recovers it.
      this.options.report(failed);
    }
  }

  private finishWhenStored(deployId: number, outcome: Outcome): Promise<Deploy> {
    return finishWhenStored(this.options.store, deployId, this.options.owner, outcome, {
      giveUp: this.givingUp.signal,
      report: (message) => this.options.report(message),
    });
  }

  private async execute(run: Run): Promise<void> {
    const { controller } = run;
    const claimed = run.deploy;
    const { store, hub, owner } = this.options;
    const target = await this.targetForRun(claimed);
    const current = await store.releases.current(claimed.app, claimed.env);
    const previousSha = current ? (primarySha(target?.app, current.components) ?? null) : null;
    // A deploy runs with the configuration of the moment it starts (unless it
    // is pinned to a release's, as rollbacks are): record that revision, and
    // the per-app revision of exactly what it runs with (a pinned environment
    // block with the app's current components and secrets).
    const configRevision = target?.pinned ? claimed.configRevision : this.options.config.current().revision;
    const runsWith = target ? appRevision(target.app, target.environment) : claimed.appRevision;
    await store.deploys.update(claimed.id, owner, {
      previousSha,
      configRevision,
      ...(runsWith !== null ? { appRevision: runsWith } : {}),
    });
    const deploy: Deploy = { ...claimed, previousSha, configRevision, appRevision: runsWith };
    run.deploy = deploy;
    hub.emit({ type: "status", deploy });
    // The timeline (deploy_phases): a failure to record it must not stop the deploy.
    const recordPhase = (phase: string, status: string, at?: string) =>
      store.phases.record(deploy.id, phase, status, at).catch((error) => this.options.report(error));
    await recordPhase(deploy.phase ?? "starting", deploy.status, deploy.startedAt ?? undefined);
    this.options.events?.started(deploy);
    const masker = new SecretMasker([...this.options.secrets, ...(target ? appSecrets(target.app) : [])]);
    const log = new LogWriter(
      deploy.id,
      store.logs,
      hub,
      masker,
      this.options.logFlushMs,
      await store.logs.end(deploy.id),
    );
    run.log = log;

    let leaseLost = false;
    const renew = setInterval(
      async () => {
        try {
          const lease = await store.deploys.renewLease(deploy.id, owner, this.options.leaseMs);
          if (!lease.held) leaseLost = true;
          if (!lease.held || lease.cancelRequested) controller.abort();
        } catch (error) {
          this.options.report(error);
        }
      },
      Math.max(200, Math.floor(this.options.leaseMs / 3)),
    );

    let outcome: PipelineOutcome;
    let underWay: Promise<void> | undefined;
    try {
      if (!target) {
        log.line(`==> ${deployLabel(deploy)}: the app or environment is no longer configured`);
        outcome = {
          status: "failed",
          errorCode: "internal",
          errorMessage: "the app or environment is no longer configured",
        };
      } else {
        let shown: Deploy = deploy;
        outcome = await runPipeline({
          deploy,
          app: target.app,
          environment: target.environment,
          git: this.options.git,
          githubChecks: this.options.githubChecks,
          log,
          workspacesDir: this.workspacesDir,
          baseEnv: this.options.baseEnv,
          killGraceMs: this.options.killGraceMs,
          signal: controller.signal,
          setPhase: async (phase, status) => {
            if (status === "waiting") {
              // Told to the outside world with the change (DeployStore.update), its entry after.
              await store.deploys.update(deploy.id, owner, { phase, status });
              shown = { ...shown, phase, status };
              await recordPhase(phase, shown.status);
            } else {
              // The phase and its timeline entry together (one statement on PostgreSQL).
              await store.deploys.setPhase(deploy.id, owner, phase, status);
              shown = { ...shown, phase, ...(status ? { status } : {}) };
            }
            hub.emit({ type: "status", deploy: shown });
          },
          setPid: (pid) => {
            if (pid !== null) this.options.underWay?.(deploy.id);
            return store.deploys.update(deploy.id, owner, { pid });
          },
          fleet: this.options.fleet,
          providerReleaseOf: async (number) =>
            (await store.releases.byDeployNumber(deploy.app, deploy.env, number))?.providerRelease ?? null,
          awaitApproval: async (timeoutMs) => {
            run.awaitingApproval = true;
            if (this.stopped) controller.abort(new Interruption(APPROVAL_INTERRUPTED));
            try {
              return await awaitApproval(store, deploy.id, timeoutMs, controller.signal);
            } finally {
              run.awaitingApproval = false;
            }
          },
        });
      }
    } finally {
      clearInterval(renew);
      // Work waiting for this deploy to be under way goes now, whatever ended it.
      underWay = this.options.underWay?.(deploy.id);
    }
    // Bounded: a description is worth a moment, never a deploy's end.
    if (underWay) await settledWithin(underWay, UNDER_WAY_WAIT_MS);
    if (leaseLost) {
      // Someone recovered this deploy as interrupted; recording more would contradict them.
      await log.close().catch(() => undefined);
      this.options.events?.finished(await store.deploys.get(deploy.id));
      return;
    }
    // Stopped by this server's shutdown rather than by a person: whatever the
    // provider made of the abort, the outcome is `interrupted`.
    const interruption = interruptionOf(controller.signal);
    if (interruption && outcome.status === "cancelled") {
      outcome = { status: "failed", errorCode: "interrupted", errorMessage: interruption.message };
      log.line(`==> interrupted: ${interruption.message}`);
    } else if (outcome.status === "cancelled") log.line("==> cancelled");
    // The outcome is recorded even when the log's last lines cannot be (the store went away).
    await log.close().catch((error) => this.options.report(error));
    const finished = await this.finishWhenStored(deploy.id, {
      status: outcome.status,
      errorCode: outcome.status === "failed" ? outcome.errorCode : null,
      // Messages quote git, hosts and commands: they are masked like the log they end.
      errorMessage: outcome.status === "succeeded" ? null : log.masker.mask(outcome.errorMessage),
      ...(outcome.status === "succeeded" && target
        ? {
            release: {
              fingerprint: outcome.fingerprint,
              environmentConfig: target.environment,
              artifact: outcome.artifact ?? null,
              providerRelease: outcome.providerRelease ?? null,
            },
          }
        : {}),
    });
    hub.emit({ type: "status", deploy: finished });
    this.options.events?.finished(finished);
  }

  /**
   * Deploys whose holder died are failed as `interrupted` (with a last log
   * line, in the same transaction); a command the dead server left running is
   * stopped.
   */
  async recover(): Promise<number> {
    const { store, owner, hub } = this.options;
    const shared = store.caps.sharedBetweenProcesses;
    const abandoned = await store.deploys.abandoned((holder) => ownerIsDead(holder, owner, shared));
    let recovered = 0;
    for (const { deploy, owner: holder, pid } of abandoned) {
      if (holder === owner) continue;
      if (!(await store.deploys.markInterrupted(deploy.id, holder, "the server running this deploy stopped")))
        continue;
      recovered++;
      if (pid !== null && orphanBelongsTo(pid, deploy.id)) {
        try {
          process.kill(-pid, "SIGKILL");
        } catch {
          // Already gone.
        }
      }
      const marked = await store.deploys.get(deploy.id);
      hub.emit({ type: "status", deploy: marked });
      this.options.events?.recovered(marked);
    }
    if (recovered > 0) this.wake();
    return recovered;
  }

  /** What a claimed deploy runs with: a rollback brings back its release's settings. */
  private async targetForRun(
    deploy: Deploy,
  ): Promise<{ app: AppConfig; environment: EnvironmentConfig; pinned: boolean } | undefined> {
    const app = this.options.config.current().apps.get(deploy.app);
    if (!app) return undefined;
    const recorded = (await this.options.store.deploys.environmentConfigOf(
      deploy.id,
    )) as EnvironmentConfig | null;
    const environment = recorded ?? app.environments[deploy.env];
    return environment ? { app, environment, pinned: recorded !== null } : undefined;
  }
}

/**
 * Waits for `turnout approve|abort` on a deploy. The answer is read from the
 * store, so it may come through any server process.
 */
async function awaitApproval(
  store: Store,
  deployId: number,
  timeoutMs: number,
  signal: AbortSignal,
): Promise<"approved" | "aborted" | "timeout"> {
  await store.fleet.requestApproval(deployId);
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if (signal.aborted) return "aborted";
    const { state } = await store.fleet.approval(deployId);
    if (state === "approved" || state === "aborted") return state;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  return "timeout";
}

/** Which comes first: every deploy ended, the grace ran out, or `now` was aborted. */
async function waitFor(
  ended: Promise<unknown>,
  graceMs: number,
  now: AbortSignal | undefined,
): Promise<"ended" | "grace" | "now"> {
  if (now?.aborted) return "now";
  let timer: NodeJS.Timeout | undefined;
  let onNow: (() => void) | undefined;
  try {
    return await Promise.race([
      ended.then(() => "ended" as const),
      new Promise<"grace">((resolve) => {
        timer = setTimeout(() => resolve("grace"), graceMs);
      }),
      new Promise<"now">((resolve) => {
        onNow = () => resolve("now");
        now?.addEventListener("abort", onNow, { once: true });
      }),
    ]);
  } finally {
    clearTimeout(timer);
    if (onNow) now?.removeEventListener("abort", onNow);
  }
}

/** Waits for `promise` to settle, at most `ms`. */
async function settledWithin(promise: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    promise.then(
      () => undefined,
      () => undefined,
    ),
    new Promise<void>((resolve) => {
      timer = setTimeout(resolve, ms);
    }),
  ]);
  clearTimeout(timer);
}
