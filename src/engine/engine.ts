import path from "node:path";
import { GithubChecks } from "../checks/github-checks.js";
import { configProblemFor } from "../config/app-availability.js";
import type { ConfigProvider, ConfigStatus } from "../config/config-provider.js";
import type { AppConfig, ConfigSnapshot, EnvironmentTarget } from "../domain/app-config.js";
import { auditActor } from "../domain/audit.js";
import { type Deploy, deployLabel, deployNotFound, isFinished } from "../domain/deploy.js";
import type { CommitLock } from "../domain/deploy-guards.js";
import { appNotFound, notFound, TurnoutError } from "../domain/errors.js";
import type { Lock } from "../domain/lock.js";
import { assertName } from "../domain/names.js";
import type { PipelineRun } from "../domain/release-pipeline.js";
import { authorize, canSee, type Permission, type Principal } from "../domain/roles.js";
import type { GitMirrors } from "../git/mirrors.js";
import type { FleetDeps } from "../providers/fleet/fleet-provider.js";
import type { AutoOutcome } from "../store/auto-admission.js";
import { SELF_HEAL_USER } from "../store/host-history.js";
import type { Store } from "../store/store.js";
import type {
  DeployEvent,
  DeployRequest,
  EngineApi,
  PendingComponent,
  PokeSource,
  RollbackRequest,
} from "./api.js";
import { changedEnvironments, lookAtApp, type ReconcileReason, reconcile } from "./auto-deploy.js";
import { type Change, ChangeFeed } from "./change-feed.js";
import { CoalescedRunner } from "./coalesced-runner.js";
import { describeCommits } from "./commit-info.js";
import { lockCommit, unlockCommit } from "./commit-lock-ops.js";
import {
  type AdmissionDeps,
  admitDeploy,
  admitRollback,
  rollbackTarget,
  withArtifact,
} from "./deploy-admission.js";
import { DriftWatch } from "./drift-watch.js";
import { EventHub } from "./event-hub.js";
import { type FleetHostState, FleetOps } from "./fleet-ops.js";
import { hostsInMotion } from "./hosts-in-motion.js";
import { newOwnerId } from "./owner.js";
import { pendingChanges } from "./pending.js";
import { answerRun, type PipelineView, pipelineView, type RunChoice } from "./pipeline-view.js";
import { Poller } from "./poller.js";
import { type PromotionRequest, queuePromotion } from "./promotion.js";
import { type DeployReadiness, deployReadiness } from "./readiness.js";
import { ReleasePipelines } from "./release-pipeline.js";
import { previewRollback, type RollbackPreview } from "./rollback-preview.js";
import { recordUndeployed, type UndeployedInputs } from "./undeployed.js";
import { WakeTimers } from "./wake-timers.js";
import { type DeployLifecycleEvents, type DrainOptions, Worker } from "./worker.js";

/** Drift watch and self-heal react to host reports at most this often (see CoalescedRunner). */
const HOST_REACTION_INTERVAL_MS = 1000;
/** How soon a self-heal held back by a lock or a deploy is tried again. */
const SELF_HEAL_RETRY_MS = 5000;
/** How long a deploy's commits wait to be described when its work is not under way here (describeSoon). */
const DESCRIBE_WAIT_MS = 1000;

export interface EngineOptions {
  /** This process's lease-holder identity (default: a new one). */
  owner?: string;
  store: Store;
  config: ConfigProvider;
  git: GitMirrors;
  dataDir: string;
  concurrency: number;
  leaseMs: number;
  killGraceMs: number;
  logFlushMs: number;
  /** Environment every deploy command starts from (PATH, HOME, …). */
  baseEnv: Record<string, string>;
  /** Values masked in every log line (the admin token, …). */
  secrets?: string[];
  /** Where the engine reports its own trouble (not deploy output). */
  report?: (message: string) => void;
  /** Told when a deploy starts and ends in this process (the server prints a line for each). */
  events?: DeployLifecycleEvents;
  /**
   * Look at repositories on their poll intervals, and reconcile auto_deploy
   * environments every `reconcileMs` (default on; tests may poke and
   * reconcile by hand instead).
   */
  polling?: boolean;
  /** How often the periodic reconcile runs (default 60 s). */
  reconcileMs?: number;
  /** GitHub client for CI gates and the change preview (tests point it at a local server through the manifest). */
  githubChecks?: GithubChecks;
  /** The clock deploy windows and min_interval are read by (default: the system's; tests move it). */
  clock?: () => Date;
  /** Fleet deploys: artifacts, agents and SSH hosts (absent: shell deploys only). */
  fleet?: FleetDeps & { onHostsChange?(listener: () => void): () => void };
  /** How often release pipelines are looked at besides when a deploy ends (default 1 s). */
  pipelineTickMs?: number;
}

/**
 * The engine admits deploy requests into the queue (names, params, refs and
 * locks checked, refs resolved to commits) and owns the two loops that act
 * on them: the worker (runs queued deploys) and the poller (turns new commits
 * and configurations into auto-deploys).
 */
export class Engine implements EngineApi {
  readonly owner: string;
  private readonly hub = new EventHub();
  /** Hints for live pages: deploys, locks, undeployed commits, hosts (see change-feed.ts). */
  private readonly feed = new ChangeFeed();
  private unsubscribeHostFeed: (() => void) | undefined;
  /** Apps whose undeployed commits are being counted again, and whether once more is due after. */
  private readonly counting = new Map<string, { again: boolean; done: Promise<void> }>();
  /** Announced deploys whose commits wait to be described (see describeSoon): release, and the description. */
  private readonly describing = new Map<number, { release: () => void; done: Promise<void> }>();
  /** What each environment's undeployed count was last made from (undeployed.ts). */
  private readonly undeployedInputs: UndeployedInputs = new Map();
  private readonly worker: Worker;
  private readonly poller: Poller;
  private readonly pipelines: ReleasePipelines;
  private readonly githubChecks: GithubChecks;
  private unsubscribeConfig: (() => void) | undefined;
  private unsubscribeHosts: (() => void) | undefined;
  private readonly fleetOps: FleetOps;
  private readonly driftWatch: DriftWatch;
  private readonly healing = new Map<string, number>();
  private stopping = false;
  private reconcileTimer: NodeJS.Timeout | undefined;
  /** Reconciles in progress, so that stop() waits for them before the store closes. */
  private readonly reconciling = new Set<Promise<unknown>>();
  /** The last reconcile error said per environment: a lasting problem is said once, not every minute. */
  private readonly reconcileErrors = new Map<string, string>();
  /** Environments held back by a deploy window or min_interval, and when to look at them again. */
  readonly wakeTimers: WakeTimers;
  private readonly now: () => Date;

  constructor(private readonly options: EngineOptions) {
    this.owner = options.owner ?? newOwnerId();
    this.now = options.clock ?? (() => new Date());
    this.wakeTimers = new WakeTimers(this.now);
    this.githubChecks = options.githubChecks ?? new GithubChecks();
    this.worker = new Worker({
      owner: this.owner,
      store: options.store,
      config: options.config,
      git: options.git,
      githubChecks: this.githubChecks,
      hub: this.hub,
      dataDir: options.dataDir,
      concurrency: options.concurrency,
      leaseMs: options.leaseMs,
      killGraceMs: options.killGraceMs,
      logFlushMs: options.logFlushMs,
      baseEnv: options.baseEnv,
      secrets: options.secrets ?? [],
      fleet: options.fleet,
      events: options.events,
      underWay: (deployId) => {
        const waiting = this.describing.get(deployId);
        waiting?.release();
        return waiting?.done;
      },
      report: (error) => this.report(error),
    });
    this.fleetOps = new FleetOps(options.store, (deploy) => this.announce(deploy));
    this.driftWatch = new DriftWatch({
      hosts: (target) => this.fleetOps.hosts(target),
      motion: (app, env) => hostsInMotion(options.store, app, env, this.now()),
      record: (event) => options.store.notify.record(event),
      now: () => this.now(),
    });
    this.hub.tap((event) => {
      if (event.type !== "status") return;
      const { deploy } = event;
      this.feed.emit({
        type: "deploy",
        app: deploy.app,
        env: deploy.env,
        deployId: deploy.id,
        number: deploy.number,
        status: deploy.status,
        phase: deploy.phase,
      });
      // What the environment runs changed (or not): its undeployed commits are counted again.
      if (isFinished(deploy.status)) this.countUndeployed(deploy.app);
      // …and the next stage of a pipeline may move.
      if (isFinished(deploy.status)) this.pipelines.poke();
    });
    this.pipelines = new ReleasePipelines({
      store: options.store,
      config: () => this.config(),
      git: options.git,
      githubChecks: this.githubChecks,
      workDir: path.join(options.dataDir, "pipeline-checks"),
      baseEnv: options.baseEnv,
      promote: async (app, run) => {
        const environment = app.environments[run.env];
        if (!environment) throw notFound(`environment '${app.name}/${run.env}'`);
        const system: Principal = {
          tokenId: 0,
          name: run.decidedBy ? `turnout (pipeline, approved by ${run.decidedBy})` : "turnout (pipeline)",
          role: "admin",
          apps: null,
        };
        const deploy = await queuePromotion(
          this.promotionDeps(),
          system,
          { app, environment },
          {
            app: app.name,
            from: run.fromEnv,
            to: run.env,
            trigger: "pipeline",
          },
        );
        this.announce(deploy);
        return deploy;
      },
      changed: (app) => this.feed.emit({ type: "pipeline", app }),
      report: (error) => this.report(error),
    });
    this.poller = new Poller({
      config: options.config,
      look: async (app, source) => {
        await this.look(app, source);
      },
      report: (error) => this.report(error),
    });
  }

  async start(): Promise<void> {
    await this.worker.start();
    this.pipelines.start(this.options.pipelineTickMs ?? 1000);
    this.unsubscribeConfig = this.options.config.onChange((previous, next) => {
      const changed = changedEnvironments(previous, next);
      if (changed.size > 0) this.reconcileInBackground("config", changed);
    });
    // Changes made while no server ran (configuration edited, or an upgrade)
    // are deployed now, not at the next change.
    this.reconcileInBackground("start");
    if (this.options.polling !== false) {
      this.poller.start();
      this.reconcileTimer = setInterval(
        () => this.reconcileInBackground("periodic"),
        this.options.reconcileMs ?? 60_000,
      );
    }
    // Host reports come in bursts (every host of a deploy, twice or more): reactions are merged.
    let retry: NodeJS.Timeout | undefined;
    const hostReactions = new CoalescedRunner(
      async () => {
        const reported = (error: Error) => {
          this.report(error);
          return false;
        };
        const held = await Promise.all([
          this.selfHeal().catch(reported),
          this.driftWatch.check(this.fleetTargets()).catch(reported),
        ]);
        // A heal held back by a lock or a deploy, or a drift check put off because a deploy just
        // ended, is tried again: nothing else may happen to the hosts once that deploy ends or
        // the lock goes (on this server or another).
        if (held.includes(true) && !retry) {
          retry = setTimeout(() => {
            retry = undefined;
            hostReactions.kick();
          }, SELF_HEAL_RETRY_MS);
          retry.unref();
        }
      },
      HOST_REACTION_INTERVAL_MS,
      (error) => this.report(error),
    );
    const unsubscribe = this.options.fleet?.onHostsChange?.(() => hostReactions.kick());
    this.unsubscribeHosts = () => {
      unsubscribe?.();
      clearTimeout(retry);
      void hostReactions.stop();
    };
    this.unsubscribeHostFeed = this.options.fleet?.onHostsChange?.(() => this.feed.emit({ type: "hosts" }));
  }

  /**
   * The first step of a shutdown: stops taking work — no more polling,
   * claims, or reactions to configuration and host changes — while running
   * deploys go on; shuttingDown() turns true, so the HTTP layer refuses new
   * requests that would change anything.
   */
  async stopTakingWork(): Promise<void> {
    this.stopping = true;
    this.unsubscribeConfig?.();
    this.unsubscribeHosts?.();
    this.unsubscribeHostFeed?.();
    this.worker.stopClaiming();
    clearInterval(this.reconcileTimer);
    await this.pipelines.stop();
    this.wakeTimers.stop();
    await Promise.allSettled([...this.reconciling]);
    await this.poller.stop();
  }

  shuttingDown(): boolean {
    return this.stopping;
  }

  /** The deploys this process is running now. */
  runningDeploys(): Deploy[] {
    return this.worker.runningDeploys();
  }

  /**
   * Lets running deploys finish within `graceMs` (less if `now` aborts), then
   * interrupts the rest (recorded `failed (interrupted)`); resolves once all
   * have ended. Stops taking work first if that was not done yet.
   */
  async finishRunning(options: DrainOptions): Promise<void> {
    await this.stopTakingWork();
    await this.worker.drain(options);
    // Descriptions still waiting are written now, and like the last counts of undeployed commits
    // (started by the last deploys to finish) they end before the store closes.
    const describing = [...this.describing.values()];
    for (const waiting of describing) waiting.release();
    await Promise.allSettled([
      ...describing.map((waiting) => waiting.done),
      ...[...this.counting.values()].map((count) => count.done),
    ]);
  }

  /** Stops at once: running deploys are interrupted. */
  async stop(): Promise<void> {
    await this.finishRunning({ graceMs: 0 });
  }

  config(): ConfigSnapshot {
    return this.options.config.current();
  }

  configStatus(): ConfigStatus {
    return this.options.config.status();
  }

  subscribe(deployId: number, listener: (event: DeployEvent) => void): () => void {
    return this.hub.subscribe(deployId, listener);
  }

  /**
   * The reconcile step, without fetching: every auto_deploy environment gets
   * one deploy if it does not run its desired state (branch heads as the
   * mirrors have them, settings as decided). Runs on start, when the
   * configuration changes and periodically; callable by hand (tests).
   */
  reconcileAutoDeploys(reason: ReconcileReason = "periodic"): Promise<AutoOutcome[]> {
    return this.track(reconcile(this.reconcileDeps(), reason));
  }

  poke(app: string, source: PokeSource): Promise<void> {
    assertName("app", app);
    if (!this.config().apps.has(app)) throw appNotFound(app);
    return this.poller.poke(app, source);
  }

  async pending(principal: Principal, app: string, env: string): Promise<PendingComponent[]> {
    const target = this.target(principal, app, env, "read");
    return pendingChanges({
      git: this.options.git,
      store: this.options.store,
      githubChecks: this.githubChecks,
      app: target.app,
      environment: target.environment,
    });
  }

  async fleetHosts(principal: Principal, app: string, env: string): Promise<FleetHostState[]> {
    const target = this.target(principal, app, env, "read");
    return this.fleetOps.hosts(target);
  }

  reconcile(principal: Principal, app: string, env: string): Promise<Deploy> {
    return this.fleetOps.reconcile(principal, this.target(principal, app, env, "deploy"));
  }

  switchSlot(principal: Principal, app: string, env: string, slot: string): Promise<Deploy> {
    return this.fleetOps.switchSlot(principal, this.target(principal, app, env, "deploy"), slot);
  }

  async answerApproval(
    principal: Principal,
    deployId: number,
    answer: "approved" | "aborted",
  ): Promise<Deploy> {
    await this.findDeploy(principal, deployId, "deploy");
    return this.fleetOps.answer(principal, deployId, answer);
  }

  /**
   * `self_heal`: fleet environments whose hosts drifted (or a host joined)
   * get a reconcile, unless the environment is locked, has a deploy queued
   * or running (a rollback in progress included) or one that ended moments
   * ago (hostsInMotion). At most one attempt per environment every 10
   * seconds. True when a drifted environment was held back by any of these:
   * the caller tries again later (a host that joined during a deploy or a
   * heal was otherwise never healed, since nothing about the hosts changes
   * when that deploy ends).
   */
  async selfHeal(): Promise<boolean> {
    let held = false;
    const system: Principal = {
      tokenId: 0,
      name: SELF_HEAL_USER,
      role: "admin",
      apps: null,
      source: "schedule",
    };
    for (const app of this.config().apps.values()) {
      for (const environment of Object.values(app.environments)) {
        if (!environment.selfHeal || environment.deploy.provider !== "fleet") continue;
        const key = `${app.name}/${environment.name}`;
        const target = { app, environment };
        const hosts = await this.fleetOps.hosts(target);
        if (!hosts.some((h) => h.drifted && h.connected)) continue;
        // A heal just started (a host that joined while it ran may not be in it), a lock, a
        // deploy, or one that just ended (its hosts' reports may lag): look again later.
        if (
          (this.healing.get(key) ?? 0) > Date.now() ||
          (await this.options.store.locks.get(app.name, environment.name)) ||
          (await hostsInMotion(this.options.store, app.name, environment.name, this.now())) !== null
        ) {
          held = true;
          continue;
        }
        this.healing.set(key, Date.now() + 10_000);
        await this.fleetOps.reconcile(system, target);
      }
    }
    return held;
  }

  /** Every fleet environment of the configuration. */
  private *fleetTargets(): Iterable<EnvironmentTarget> {
    for (const app of this.config().apps.values())
      for (const environment of Object.values(app.environments))
        if (environment.deploy.provider === "fleet") yield { app, environment };
  }

  async requestDeploy(principal: Principal, request: DeployRequest): Promise<Deploy> {
    const target = this.target(principal, request.app, request.env, "deploy");
    const deploy = await admitDeploy(this.admissionDeps(), principal, target, request);
    this.announce(deploy);
    return deploy;
  }

  async requestRollback(principal: Principal, request: RollbackRequest): Promise<Deploy> {
    const target = this.target(principal, request.app, request.env, "deploy");
    const deploy = await admitRollback(this.admissionDeps(), principal, target, request);
    this.announce(deploy);
    return deploy;
  }

  private admissionDeps(): AdmissionDeps {
    return {
      store: this.options.store,
      git: this.options.git,
      artifacts: this.options.fleet?.artifacts,
      configRevision: () => this.config().revision,
      now: () => this.now(),
      interruptedRepairTarget: (target) => this.fleetOps.interruptedRepairTarget(target),
    };
  }

  async requestPromotion(principal: Principal, request: PromotionRequest): Promise<Deploy> {
    const target = this.target(principal, request.app, request.to, "deploy");
    this.target(principal, request.app, request.from, "read");
    const deploy = await queuePromotion(this.promotionDeps(), principal, target, {
      ...request,
      trigger: "promote",
    });
    this.announce(deploy);
    return deploy;
  }

  async pipeline(principal: Principal, app: string): Promise<PipelineView> {
    return pipelineView(this.options.store, this.app(principal, app, "read"));
  }

  async answerPipeline(
    principal: Principal,
    app: string,
    choice: RunChoice,
    answer: "approve" | "reject",
    message?: string,
  ): Promise<PipelineRun> {
    const config = this.app(principal, app, "deploy");
    const run = await answerRun(this.options.store, principal, config, choice, answer, message);
    this.feed.emit({ type: "pipeline", app: config.name });
    this.pipelines.poke();
    return run;
  }

  /** Looks at every release pipeline now (also on a timer and when a deploy ends). */
  tickPipelines(): Promise<void> {
    return this.pipelines.tick();
  }

  private promotionDeps() {
    return {
      store: this.options.store,
      configRevision: () => this.config().revision,
      withArtifact: (digest: string, create: () => Promise<Deploy>, gone: () => Error) =>
        withArtifact(this.options.fleet?.artifacts, digest, create, gone),
    };
  }

  async cancel(principal: Principal, deployId: number): Promise<Deploy> {
    await this.findDeploy(principal, deployId, "deploy");
    const deploy = await this.options.store.deploys.requestCancel(deployId, principal.name);
    this.worker.abort(deployId);
    if (deploy.status === "cancelled") this.hub.emit({ type: "status", deploy });
    await this.options.store.audit.record({
      actor: auditActor(principal),
      action: "deploy.cancel",
      app: deploy.app,
      env: deploy.env,
      target: deployLabel(deploy),
      details: { deploy: deploy.id, status: deploy.status },
    });
    return deploy;
  }

  async lock(principal: Principal, app: string, env: string, reason: string): Promise<Lock> {
    const target = this.target(principal, app, env, "deploy");
    const text = reason.trim();
    if (!text) throw new TurnoutError("E_VALIDATION", "a lock needs a reason");
    const lock = await this.options.store.locks.lock(
      target.app.name,
      target.environment.name,
      auditActor(principal),
      text,
    );
    this.feed.emit({ type: "lock", app: lock.app, env: lock.env, locked: true });
    return lock;
  }

  async unlock(principal: Principal, app: string, env: string): Promise<Lock | undefined> {
    const target = this.target(principal, app, env, "deploy");
    const removed = await this.options.store.locks.unlock(
      target.app.name,
      target.environment.name,
      auditActor(principal),
    );
    if (removed)
      this.feed.emit({ type: "lock", app: target.app.name, env: target.environment.name, locked: false });
    // Auto-deploys held back by the lock catch up now rather than at the next poll.
    if (removed && target.environment.autoDeploy) void this.poller.poke(target.app.name, "poll");
    return removed;
  }

  async commitLocks(principal: Principal, app: string, history = false): Promise<CommitLock[]> {
    return this.options.store.commitLocks.list(this.app(principal, app, "read").name, { history });
  }

  async lockCommit(principal: Principal, app: string, sha: string, reason: string): Promise<CommitLock> {
    const config = this.app(principal, app, "deploy");
    const lock = await lockCommit(
      { git: this.options.git, store: this.options.store },
      config,
      sha,
      principal.name,
      reason,
    );
    this.commitLocksChanged(config);
    return lock;
  }

  async unlockCommit(principal: Principal, app: string, sha: string): Promise<CommitLock | undefined> {
    const config = this.app(principal, app, "deploy");
    const removed = await unlockCommit({ store: this.options.store }, config, sha, principal.name);
    if (removed) this.commitLocksChanged(config);
    // Auto-deploys held back by the lock catch up now rather than at the next poll.
    if (removed && Object.values(config.environments).some((e) => e.autoDeploy))
      void this.poller.poke(config.name, "poll");
    return removed;
  }

  /** Live pages showing what is pending (where locked commits are marked) look again. */
  private commitLocksChanged(app: AppConfig): void {
    for (const env of Object.keys(app.environments))
      this.feed.emit({ type: "undeployed", app: app.name, env });
  }

  /** Runs recovery now (also runs on start and periodically). */
  recover(): Promise<number> {
    return this.worker.recover();
  }

  private async look(app: string, source: PokeSource): Promise<AutoOutcome[]> {
    const outcomes = await lookAtApp(this.autoDeps(), app, source);
    // Right after the fetch: the overview's "n undeployed" costs no git of its own.
    await this.countUndeployedNow(app);
    return outcomes;
  }

  /** Counts an app's undeployed commits again soon; calls while one count runs share one more. */
  private countUndeployed(app: string): void {
    const running = this.counting.get(app);
    if (running) {
      running.again = true;
      return;
    }
    const state = { again: false, done: Promise.resolve() };
    this.counting.set(app, state);
    state.done = (async () => {
      try {
        do {
          state.again = false;
          await this.countUndeployedNow(app);
        } while (state.again && !this.stopping);
      } finally {
        this.counting.delete(app);
      }
    })();
  }

  private async countUndeployedNow(app: string): Promise<void> {
    const config = this.config().apps.get(app);
    if (!config) return;
    try {
      const changed = await recordUndeployed(
        this.options.git,
        this.options.store,
        config,
        this.undeployedInputs,
      );
      for (const env of changed) this.feed.emit({ type: "undeployed", app, env });
    } catch (error) {
      this.report(error);
    }
  }

  changes(listener: (change: Change) => void): () => void {
    return this.feed.subscribe(listener);
  }

  async readiness(principal: Principal, app: string, env: string, ref?: string): Promise<DeployReadiness> {
    const target = this.target(principal, app, env, "read");
    return deployReadiness({
      store: this.options.store,
      git: this.options.git,
      githubChecks: this.githubChecks,
      principal,
      app: target.app,
      environment: target.environment,
      ref,
      now: this.now(),
    });
  }

  async rollbackPreview(
    principal: Principal,
    app: string,
    env: string,
    to?: number,
  ): Promise<RollbackPreview> {
    const target = this.target(principal, app, env, "read");
    // The same choice requestRollback makes, so the preview is what the button does.
    const repair =
      to === undefined
        ? await this.fleetOps.interruptedRepairTarget({ app: target.app, environment: target.environment })
        : undefined;
    const release =
      repair ?? (await rollbackTarget(this.options.store, target.app.name, target.environment.name, to));
    return previewRollback({
      store: this.options.store,
      git: this.options.git,
      app: target.app,
      env: target.environment.name,
      target: release,
      repair: repair !== undefined,
    });
  }

  private reconcileDeps() {
    return {
      ...this.autoDeps(),
      reportFor: (key: string, message: string | undefined) => {
        if (message === undefined) {
          this.reconcileErrors.delete(key);
        } else if (this.reconcileErrors.get(key) !== message) {
          this.reconcileErrors.set(key, message);
          this.report(message);
        }
      },
    };
  }

  private track<T>(work: Promise<T>): Promise<T> {
    const settled = work.then(
      () => undefined,
      () => undefined,
    );
    this.reconciling.add(settled);
    void settled.then(() => this.reconciling.delete(settled));
    return work;
  }

  /** Runs a reconcile in the background: its own errors are reported per environment, anything else here. */
  private reconcileInBackground(reason: ReconcileReason, only?: Map<string, Set<string>>): void {
    this.track(reconcile(this.reconcileDeps(), reason, only)).catch((error) => this.report(error));
  }

  private autoDeps() {
    return {
      git: this.options.git,
      store: this.options.store,
      config: () => this.config(),
      admitted: (outcome: AutoOutcome) => {
        if (outcome.outcome !== "skipped") this.announce(outcome.deploy);
      },
      report: (message: string) => this.report(message),
      now: () => this.now(),
      wakeAt: (app: string, env: string, at: Date) =>
        this.wakeTimers.at(`${app}/${env}`, at, () => {
          if (!this.stopping) void this.poller.poke(app, "poll").catch((error) => this.report(error));
        }),
    };
  }

  private announce(deploy: Deploy): void {
    this.hub.emit({ type: "status", deploy });
    this.worker.wake();
    this.describeSoon(deploy);
  }

  /**
   * Describes a deploy's commits once its own work is under way here (its
   * command started, or it ended), or after DESCRIBE_WAIT_MS if it is not
   * (queued behind another deploy, or run by another server). The
   * description is one `git log`, and starting a process blocks this thread
   * (some 8 ms on a small VM): right after the request, that is time taken
   * from the worker on its way to the deploy's command.
   */
  private describeSoon(deploy: Deploy): void {
    let release = () => {};
    const released = new Promise<void>((resolve) => {
      release = resolve;
    });
    const timer = setTimeout(release, DESCRIBE_WAIT_MS);
    timer.unref();
    const done = released.then(async () => {
      clearTimeout(timer);
      try {
        await this.describe(deploy);
      } finally {
        // Kept until written: the worker records a deploy's outcome only after its description.
        if (this.describing.get(deploy.id)?.done === done) this.describing.delete(deploy.id);
      }
    });
    this.describing.set(deploy.id, { release, done });
  }

  /**
   * Records what the deploy's commits are (subject, author, date) on its row,
   * right after its refs were resolved: every way a deploy is made (request,
   * auto-deploy, rollback, reconcile, promote) is announced here.
   */
  private async describe(deploy: Deploy): Promise<void> {
    const app = this.config().apps.get(deploy.app);
    if (!app || deploy.commits !== null) return;
    try {
      const commits = await describeCommits(this.options.git, app, deploy.components);
      if (Object.keys(commits).length === 0) return;
      await this.options.store.commits.record(deploy.id, commits);
      // Told with the deploy's state now: it may have moved on since it was announced.
      const now = await this.options.store.deploys.get(deploy.id);
      this.feed.emit({
        type: "deploy",
        app: now.app,
        env: now.env,
        deployId: now.id,
        number: now.number,
        status: now.status,
        phase: now.phase,
      });
    } catch (error) {
      this.report(error);
    }
  }

  /**
   * An app named in a request, in the order that leaks least: a malformed
   * name is refused (422); an app the caller may not see is "not found",
   * exactly like a missing one; the caller's role is checked (403); then
   * whether the app exists (404). Every app-scoped entry point goes through
   * here (or `target`), so none can answer differently for "not yours" and
   * "not there".
   */
  app(principal: Principal, appName: string, permission: Permission): AppConfig {
    assertName("app", appName);
    authorize(principal, permission, appName);
    const app = this.config().apps.get(appName);
    // An app whose manifest is broken (or still being parsed) says so, rather than "not found".
    if (!app) throw configProblemFor(this.configStatus(), appName) ?? appNotFound(appName);
    return app;
  }

  /** `app`, then its environment: an environment of an app the caller may not see is the app not found. */
  target(principal: Principal, appName: string, envName: string, permission: Permission): EnvironmentTarget {
    assertName("app", appName);
    assertName("environment", envName);
    const app = this.app(principal, appName, permission);
    const environment = app.environments[envName];
    if (!environment) throw notFound(`environment '${appName}/${envName}'`, { app: appName, env: envName });
    return { app, environment };
  }

  /**
   * A deploy by id or by label. One of an app the caller may not see is
   * answered exactly as a deploy that does not exist; a label naming such an
   * app is answered so without even looking.
   */
  async findDeploy(
    principal: Principal,
    ref: number | { app: string; env: string; number: number },
    permission: Permission,
  ): Promise<Deploy> {
    const hidden = () => deployNotFound(ref);
    if (typeof ref !== "number" && !canSee(principal, ref.app)) throw hidden();
    const deploy =
      typeof ref === "number"
        ? await this.options.store.deploys.get(ref)
        : await this.options.store.deploys.getByNumber(ref.app, ref.env, ref.number);
    authorize(principal, permission, deploy.app, hidden);
    return deploy;
  }

  private report(error: unknown): void {
    this.options.report?.(error instanceof Error ? (error.stack ?? error.message) : String(error));
  }
}
