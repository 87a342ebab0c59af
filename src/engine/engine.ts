import { GithubChecks } from "../checks/github-checks.js";
import type { ConfigProvider, ConfigStatus } from "../config/config-provider.js";
import type { AppConfig, ConfigSnapshot, EnvironmentConfig } from "../domain/app-config.js";
import { type Deploy, deployLabel, type Trigger } from "../domain/deploy.js";
import { notFound, TurnoutError } from "../domain/errors.js";
import { checkLock, type Lock } from "../domain/lock.js";
import { assertName, assertParams } from "../domain/names.js";
import type { Release } from "../domain/release.js";
import { authorize, type Principal } from "../domain/roles.js";
import type { GitMirrors } from "../git/mirrors.js";
import type { AutoOutcome } from "../store/auto-admission.js";
import type { Store } from "../store/store.js";
import type {
  DeployEvent,
  DeployRequest,
  EngineApi,
  PendingComponent,
  PokeSource,
  RollbackRequest,
} from "./api.js";
import { lookAtApp, redeployChangedEnvironments } from "./auto-deploy.js";
import { resolveComponents } from "./components.js";
import { EventHub } from "./event-hub.js";
import { newOwnerId } from "./owner.js";
import { pendingChanges } from "./pending.js";
import { Poller } from "./poller.js";
import { Worker } from "./worker.js";

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
  /** Look at repositories on their poll intervals (default on; tests may poke by hand instead). */
  polling?: boolean;
  /** GitHub client for CI gates and the change preview (tests point it at a local server through the manifest). */
  githubChecks?: GithubChecks;
}

/**
 * The engine admits deploy requests into the queue (names, params, refs and
 * locks checked, refs resolved to commits) and owns the two loops that act
 * on them: the worker (runs queued deploys) and the poller (turns new commits
 * and configurations into auto-deploys).
 */
export class Engine implements EngineApi {
  readonly owner = newOwnerId();
  private readonly hub = new EventHub();
  private readonly worker: Worker;
  private readonly poller: Poller;
  private readonly githubChecks: GithubChecks;
  private unsubscribeConfig: (() => void) | undefined;

  constructor(private readonly options: EngineOptions) {
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
    this.unsubscribeConfig = this.options.config.onChange((previous, next) => {
      void redeployChangedEnvironments(this.autoDeps(), previous, next).catch((error) => this.report(error));
    });
    if (this.options.polling !== false) this.poller.start();
  }

  /** Stops both loops; with cancelRunning, running deploys are stopped too. */
  async stop(options: { cancelRunning?: boolean } = {}): Promise<void> {
    this.unsubscribeConfig?.();
    await this.poller.stop();
    await this.worker.stop(options);
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

  poke(app: string, source: PokeSource): Promise<void> {
    assertName("app", app);
    if (!this.config().apps.has(app)) throw notFound(`app '${app}'`, { app });
    return this.poller.poke(app, source);
  }

  async pending(principal: Principal, app: string, env: string): Promise<PendingComponent[]> {
    const target = this.target(app, env);
    authorize(principal, "read", target.app.name);
    return pendingChanges({
      git: this.options.git,
      store: this.options.store,
      githubChecks: this.githubChecks,
      app: target.app,
      environment: target.environment,
    });
  }

  async requestDeploy(principal: Principal, request: DeployRequest): Promise<Deploy> {
    const { app, environment } = this.target(request.app, request.env);
    authorize(principal, "deploy", app.name);
    const params = assertParams(request.params);
    const force = request.force === true;
    // Refuse early (before fetching) when locked; the transaction checks again.
    checkLock(await this.options.store.locks.get(app.name, environment.name), principal, force);
    const resolved = await resolveComponents(
      this.options.git,
      app,
      environment,
      { primary: request.ref, others: request.refs },
      { fetch: true },
    );
    // Forcing past a CI gate, like past a lock, is an admin's call.
    const skipsChecks = force && environment.checks !== undefined;
    if (skipsChecks && principal.role !== "admin") {
      throw new TurnoutError(
        "E_FORBIDDEN",
        `only an admin may force a deploy past the checks of ${app.name}/${environment.name}`,
      );
    }
    const deploy = await this.options.store.deploys.create(
      {
        app: app.name,
        env: environment.name,
        trigger: request.trigger,
        user: principal.name,
        ref: resolved.ref,
        sha: resolved.sha,
        components: resolved.components,
        params,
        force,
        configRevision: this.config().revision,
      },
      (lock) => {
        const { ignoredSafeties } = checkLock(lock, principal, force);
        return { ignoredSafeties: skipsChecks ? [...ignoredSafeties, "checks"] : ignoredSafeties };
      },
    );
    this.announce(deploy);
    return deploy;
  }

  async requestRollback(principal: Principal, request: RollbackRequest): Promise<Deploy> {
    const { app, environment } = this.target(request.app, request.env);
    authorize(principal, "deploy", app.name);
    const release = await this.rollbackTarget(app.name, environment.name, request.to);
    const current = await this.options.store.releases.current(app.name, environment.name);
    const primary = app.components[0]!.name;
    const sha = release.components[primary] ?? Object.values(release.components)[0]!;
    const force = request.force === true;
    const deploy = await this.options.store.deploys.create(
      {
        app: app.name,
        env: environment.name,
        trigger: (request.trigger ?? "rollback") as Trigger,
        user: principal.name,
        ref: sha,
        sha,
        components: release.components,
        params: {},
        force,
        configRevision: release.configRevision,
        rollbackOf: release.deployNumber,
        rolledBackFrom: current?.components ?? null,
        environmentConfig: release.environmentConfig,
      },
      (lock) => {
        // A rollback brings back code that already ran here: its checks passed then.
        const { ignoredSafeties } = checkLock(lock, principal, force);
        const gated = (release.environmentConfig as EnvironmentConfig | null)?.checks !== undefined;
        return { ignoredSafeties: gated ? [...ignoredSafeties, "checks"] : ignoredSafeties };
      },
    );
    this.announce(deploy);
    return deploy;
  }

  async cancel(principal: Principal, deployId: number): Promise<Deploy> {
    const existing = await this.options.store.deploys.get(deployId);
    authorize(principal, "deploy", existing.app);
    const deploy = await this.options.store.deploys.requestCancel(deployId, principal.name);
    this.worker.abort(deployId);
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
    const removed = await this.options.store.locks.unlock(
      target.app.name,
      target.environment.name,
      principal.name,
    );
    // Auto-deploys held back by the lock catch up now rather than at the next poll.
    if (removed && target.environment.autoDeploy) void this.poller.poke(target.app.name, "poll");
    return removed;
  }

  /** Runs recovery now (also runs on start and periodically). */
  recover(): Promise<number> {
    return this.worker.recover();
  }

  private look(app: string, source: PokeSource): Promise<AutoOutcome[]> {
    return lookAtApp(this.autoDeps(), app, source);
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
    };
  }

  private announce(deploy: Deploy): void {
    this.hub.emit({ type: "status", deploy });
    this.worker.wake();
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

  private async rollbackTarget(app: string, env: string, to: number | undefined): Promise<Release> {
    const { releases } = this.options.store;
    if (to !== undefined) {
      const release = await releases.byDeployNumber(app, env, to);
      if (!release) {
        throw new TurnoutError("E_NO_RELEASE", `${app}/${env}#${to} did not produce a release`, {
          app,
          env,
          to,
        });
      }
      return release;
    }
    const history = await releases.history(app, env, 100);
    const current = history[0];
    const previous = current && history.find((r) => r.fingerprint !== current.fingerprint);
    if (!previous) {
      throw new TurnoutError("E_NO_RELEASE", `${app}/${env} has no earlier release to roll back to`, {
        app,
        env,
      });
    }
    return previous;
  }

  private report(error: unknown): void {
    this.options.report?.(error instanceof Error ? (error.stack ?? error.message) : String(error));
  }
}
