import { mkdirSync } from "node:fs";
import path from "node:path";
import type { ConfigProvider, ConfigStatus } from "../config/config-provider.js";
import {
  type AppConfig,
  appSecrets,
  type ConfigSnapshot,
  type EnvironmentConfig,
} from "../domain/app-config.js";
import { type Deploy, deployLabel } from "../domain/deploy.js";
import { notFound, TurnoutError } from "../domain/errors.js";
import { checkLock, type Lock } from "../domain/lock.js";
import { assertName, assertParams } from "../domain/names.js";
import { freeSlots } from "../domain/queue-policy.js";
import { assertRef } from "../domain/refs.js";
import type { Release } from "../domain/release.js";
import { authorize, type Principal } from "../domain/roles.js";
import { SecretMasker } from "../domain/secrets.js";
import type { GitMirrors } from "../git/mirrors.js";
import type { Store } from "../store/store.js";
import type {
  DeployEvent,
  DeployRequest,
  EngineApi,
  PendingComponent,
  PokeSource,
  RollbackRequest,
} from "./api.js";
import { EventHub } from "./event-hub.js";
import { LogWriter } from "./log-writer.js";
import { newOwnerId, orphanBelongsTo, ownerIsDead } from "./owner.js";
import { type PipelineOutcome, runPipeline } from "./pipeline.js";

export interface EngineOptions {
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
}

/** Single-repo apps have one component; multi-repo apps will name theirs. */
export const MAIN_COMPONENT = "app";

/**
 * The engine admits deploy requests into the queue and runs them: a worker
 * loop claims queued deploys under a lease (renewed while running, and the
 * channel through which a cancel from another process arrives), runs the
 * pipeline, and records the outcome. Recovery turns deploys whose holder died
 * into `interrupted` failures so their environment's queue moves on.
 */
export class Engine implements EngineApi {
  readonly owner = newOwnerId();
  private readonly hub = new EventHub();
  private readonly running = new Map<number, AbortController>();
  private readonly finished = new Set<Promise<void>>();
  private pumping = false;
  private pumpAgain = false;
  private stopped = true;
  private pollTimer: NodeJS.Timeout | undefined;
  private recoveryTimer: NodeJS.Timeout | undefined;
  private readonly workspacesDir: string;

  constructor(private readonly options: EngineOptions) {
    this.workspacesDir = path.join(options.dataDir, "workspaces");
  }

  async start(): Promise<void> {
    mkdirSync(this.workspacesDir, { recursive: true });
    this.stopped = false;
    await this.recover();
    this.pollTimer = setInterval(() => this.wake(), 1000);
    this.recoveryTimer = setInterval(
      () => void this.recover().catch((e) => this.report(e)),
      Math.max(1000, this.options.leaseMs / 2),
    );
    this.wake();
  }

  /** Stops claiming work; running deploys are stopped and recorded as interrupted by the next start. */
  async stop(options: { cancelRunning?: boolean } = {}): Promise<void> {
    this.stopped = true;
    clearInterval(this.pollTimer);
    clearInterval(this.recoveryTimer);
    if (options.cancelRunning) for (const controller of this.running.values()) controller.abort();
    await Promise.allSettled([...this.finished]);
  }

  config(): ConfigSnapshot {
    return this.options.config.current();
  }

  configStatus(): ConfigStatus {
    return this.options.config.status();
  }

  async poke(app: string, source: PokeSource): Promise<void> {
    throw new TurnoutError("E_UNAVAILABLE", `poke(${app}, ${source}) is not implemented yet`);
  }

  async pending(principal: Principal, app: string, env: string): Promise<PendingComponent[]> {
    const target = this.target(app, env);
    authorize(principal, "read", target.app.name);
    throw new TurnoutError("E_UNAVAILABLE", "pending is not implemented yet");
  }

  subscribe(deployId: number, listener: (event: DeployEvent) => void): () => void {
    return this.hub.subscribe(deployId, listener);
  }

  async requestDeploy(principal: Principal, request: DeployRequest): Promise<Deploy> {
    const { app, environment } = this.target(request.app, request.env);
    authorize(principal, "deploy", app.name);
    const params = assertParams(request.params);
    const ref = assertRef(request.ref ?? environment.branch);
    const force = request.force === true;
    // Refuse early (before fetching) when locked; the transaction checks again.
    checkLock(await this.options.store.locks.get(app.name, environment.name), principal, force);
    const sha = await this.options.git.resolve({ url: app.repo, auth: app.auth }, ref);
    const snapshot = this.config();
    const deploy = await this.options.store.deploys.create(
      {
        app: app.name,
        env: environment.name,
        trigger: request.trigger,
        user: principal.name,
        ref,
        sha,
        components: { [MAIN_COMPONENT]: sha },
        params,
        force,
        configRevision: snapshot.revision,
      },
      (lock) => checkLock(lock, principal, force),
    );
    this.announce(deploy);
    return deploy;
  }

  async requestRollback(principal: Principal, request: RollbackRequest): Promise<Deploy> {
    const { app, environment } = this.target(request.app, request.env);
    authorize(principal, "deploy", app.name);
    const release = await this.rollbackTarget(app.name, environment.name, request.to);
    const sha = release.components[MAIN_COMPONENT] ?? Object.values(release.components)[0]!;
    const deploy = await this.options.store.deploys.create(
      {
        app: app.name,
        env: environment.name,
        trigger: request.trigger ?? "rollback",
        user: principal.name,
        ref: sha,
        sha,
        components: release.components,
        params: {},
        force: false,
        configRevision: release.configRevision,
        rollbackOf: release.deployNumber,
        environmentConfig: release.environmentConfig,
      },
      (lock) => checkLock(lock, principal, false),
    );
    this.announce(deploy);
    return deploy;
  }

  async cancel(principal: Principal, deployId: number): Promise<Deploy> {
    const existing = await this.options.store.deploys.get(deployId);
    authorize(principal, "deploy", existing.app);
    const deploy = await this.options.store.deploys.requestCancel(deployId, principal.name);
    this.running.get(deployId)?.abort();
    if (deploy.status === "cancelled") this.hub.emit({ type: "status", deploy });
    await this.options.store.audit.record({
      actor: principal.name,
      action: "deploy.cancel",
      app: deploy.app,
      env: deploy.env,
      details: { deploy: deployLabel(deploy) },
    });
    return deploy;
  }

  async lock(principal: Principal, app: string, env: string, reason: string): Promise<Lock> {
    const target = this.target(app, env);
    authorize(principal, "deploy", target.app.name);
    const text = reason.trim();
    if (!text) throw new TurnoutError("E_VALIDATION", "a lock needs a reason");
    return this.options.store.locks.lock(target.app.name, target.environment.name, principal.name, text);
  }

  async unlock(principal: Principal, app: string, env: string): Promise<Lock | undefined> {
    const target = this.target(app, env);
    authorize(principal, "deploy", target.app.name);
    return this.options.store.locks.unlock(target.app.name, target.environment.name, principal.name);
  }

  /** Nudges the worker loop: called on new work, finished work, and by a timer (other processes enqueue too). */
  wake(): void {
    if (this.stopped) return;
    if (this.pumping) {
      this.pumpAgain = true;
      return;
    }
    this.pumping = true;
    void this.pump()
      .catch((error) => this.report(error))
      .finally(() => {
        this.pumping = false;
        if (this.pumpAgain) {
          this.pumpAgain = false;
          this.wake();
        }
      });
  }

  private async pump(): Promise<void> {
    while (!this.stopped && freeSlots(this.running.size, this.options.concurrency) > 0) {
      const deploy = await this.options.store.deploys.claimNext(this.owner, this.options.leaseMs);
      if (!deploy) return;
      const controller = new AbortController();
      this.running.set(deploy.id, controller);
      const done = this.execute(deploy, controller)
        .catch((error) => this.report(error))
        .finally(() => {
          this.running.delete(deploy.id);
          this.finished.delete(done);
          this.wake();
        });
      this.finished.add(done);
    }
  }

  private async execute(claimed: Deploy, controller: AbortController): Promise<void> {
    const { store } = this.options;
    this.hub.emit({ type: "status", deploy: claimed });
    const current = await store.releases.current(claimed.app, claimed.env);
    const previousSha = current ? (current.components[MAIN_COMPONENT] ?? null) : null;
    await store.deploys.update(claimed.id, this.owner, { previousSha });
    const deploy: Deploy = { ...claimed, previousSha };
    const target = await this.targetForRun(deploy);
    const masker = new SecretMasker([
      ...(this.options.secrets ?? []),
      ...(target ? appSecrets(target.app) : []),
    ]);
    const log = new LogWriter(
      deploy.id,
      store.logs,
      this.hub,
      masker,
      this.options.logFlushMs,
      await store.logs.end(deploy.id),
    );

    let leaseLost = false;
    const renew = setInterval(
      async () => {
        try {
          const lease = await store.deploys.renewLease(deploy.id, this.owner, this.options.leaseMs);
          if (!lease.held) {
            leaseLost = true;
            controller.abort();
          } else if (lease.cancelRequested) {
            controller.abort();
          }
        } catch (error) {
          this.report(error);
        }
      },
      Math.max(200, Math.floor(this.options.leaseMs / 3)),
    );

    let outcome: PipelineOutcome;
    try {
      if (!target) {
        log.line(`==> ${deployLabel(deploy)}: app or environment is no longer configured`);
        outcome = {
          status: "failed",
          errorCode: "internal",
          errorMessage: "the app or environment is no longer configured",
        };
      } else {
        outcome = await runPipeline({
          deploy,
          app: target.app,
          environment: target.environment,
          store,
          git: this.options.git,
          log,
          workspacesDir: this.workspacesDir,
          baseEnv: this.options.baseEnv,
          killGraceMs: this.options.killGraceMs,
          signal: controller.signal,
          setPhase: async (phase) => {
            await store.deploys.update(deploy.id, this.owner, { phase });
            this.hub.emit({ type: "status", deploy: { ...deploy, phase } });
          },
          setPid: (pid) => store.deploys.update(deploy.id, this.owner, { pid }),
        });
      }
    } finally {
      clearInterval(renew);
    }
    if (leaseLost) {
      // Someone recovered this deploy as interrupted; recording more would contradict them.
      await log.close().catch(() => undefined);
      return;
    }
    if (outcome.status === "cancelled") log.line("==> cancelled");
    await log.close();
    const finished = await store.deploys.finish(deploy.id, this.owner, {
      status: outcome.status,
      errorCode: outcome.status === "failed" ? outcome.errorCode : null,
      errorMessage: outcome.status === "succeeded" ? null : outcome.errorMessage,
      ...(outcome.status === "succeeded" && target
        ? { release: { fingerprint: outcome.fingerprint, environmentConfig: target.environment } }
        : {}),
    });
    this.hub.emit({ type: "status", deploy: finished });
  }

  /**
   * Deploys whose holder died are failed as `interrupted`, with a last log
   * line saying so; a command the dead server left running is stopped.
   */
  async recover(): Promise<number> {
    const { store } = this.options;
    const shared = store.caps.sharedBetweenProcesses;
    const abandoned = await store.deploys.abandoned((owner) => ownerIsDead(owner, this.owner, shared));
    let recovered = 0;
    for (const { deploy, owner, pid } of abandoned) {
      if (owner === this.owner) continue;
      if (!(await store.deploys.markInterrupted(deploy.id, owner, "the server running this deploy stopped")))
        continue;
      recovered++;
      if (pid !== null && orphanBelongsTo(pid, deploy.id)) {
        try {
          process.kill(-pid, "SIGKILL");
        } catch {
          // Already gone.
        }
      }
      this.hub.emit({ type: "status", deploy: await store.deploys.get(deploy.id) });
    }
    if (recovered > 0) this.wake();
    return recovered;
  }

  private announce(deploy: Deploy): void {
    this.hub.emit({ type: "status", deploy });
    this.wake();
  }

  private target(appName: string, envName: string): { app: AppConfig; environment: EnvironmentConfig } {
    assertName("app", appName);
    assertName("environment", envName);
    const app = this.config().apps.get(appName);
    if (!app) throw notFound(`app '${appName}'`, { app: appName });
    const environment = app.environments[envName];
    if (!environment) throw notFound(`environment '${appName}/${envName}'`, { app: appName, env: envName });
    return { app, environment };
  }

  /** What a claimed deploy runs with: a rollback brings back its release's settings. */
  private async targetForRun(
    deploy: Deploy,
  ): Promise<{ app: AppConfig; environment: EnvironmentConfig } | undefined> {
    const app = this.config().apps.get(deploy.app);
    if (!app) return undefined;
    const recorded = await this.options.store.deploys.environmentConfigOf(deploy.id);
    const environment = (recorded as EnvironmentConfig | null) ?? app.environments[deploy.env];
    return environment ? { app, environment } : undefined;
  }

  private async rollbackTarget(app: string, env: string, to: number | undefined): Promise<Release> {
    const { releases } = this.options.store;
    if (to !== undefined) {
      const release = await releases.byDeployNumber(app, env, to);
      if (!release)
        throw new TurnoutError("E_NO_RELEASE", `${app}/${env}#${to} did not produce a release`, {
          app,
          env,
          to,
        });
      return release;
    }
    const history = await releases.history(app, env, 100);
    const current = history[0];
    const previous = current && history.find((r) => r.fingerprint !== current.fingerprint);
    if (!previous)
      throw new TurnoutError("E_NO_RELEASE", `${app}/${env} has no earlier release to roll back to`, {
        app,
        env,
      });
    return previous;
  }

  private report(error: unknown): void {
    this.options.report?.(error instanceof Error ? (error.stack ?? error.message) : String(error));
  }
}
