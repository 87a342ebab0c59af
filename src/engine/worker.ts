import { mkdirSync } from "node:fs";
import path from "node:path";
import type { GithubChecks } from "../checks/github-checks.js";
import type { ConfigProvider } from "../config/config-provider.js";
import { type AppConfig, appSecrets, type EnvironmentConfig } from "../domain/app-config.js";
import { type Deploy, deployLabel } from "../domain/deploy.js";
import { freeSlots } from "../domain/queue-policy.js";
import { SecretMasker } from "../domain/secrets.js";
import type { GitMirrors } from "../git/mirrors.js";
import type { FleetDeps } from "../providers/fleet/fleet-provider.js";
import type { Store } from "../store/store.js";
import { primarySha } from "./components.js";
import type { EventHub } from "./event-hub.js";
import { LogWriter } from "./log-writer.js";
import { orphanBelongsTo, ownerIsDead } from "./owner.js";
import { type PipelineOutcome, runPipeline } from "./pipeline.js";

/**
 * The worker loop of one server process: claims queued deploys under a lease
 * (renewed while running, and the channel through which a cancel from another
 * process arrives), runs their pipeline, records the outcome; and recovers
 * deploys whose holder died as `interrupted`, so their queue moves on.
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
  report(error: unknown): void;
}

export class Worker {
  private readonly running = new Map<number, AbortController>();
  private readonly finished = new Set<Promise<void>>();
  private pumping = false;
  private pumpAgain = false;
  private stopped = true;
  private pollTimer: NodeJS.Timeout | undefined;
  private recoveryTimer: NodeJS.Timeout | undefined;
  private readonly workspacesDir: string;

  constructor(private readonly options: WorkerOptions) {
    this.workspacesDir = path.join(options.dataDir, "workspaces");
  }

  async start(): Promise<void> {
    mkdirSync(this.workspacesDir, { recursive: true });
    this.stopped = false;
    await this.recover();
    this.pollTimer = setInterval(() => this.wake(), 1000);
    this.recoveryTimer = setInterval(
      () => void this.recover().catch((e) => this.options.report(e)),
      Math.max(1000, this.options.leaseMs / 2),
    );
    this.wake();
  }

  /** Stops claiming work; with cancelRunning, running deploys are stopped (and recorded cancelled). */
  async stop(options: { cancelRunning?: boolean } = {}): Promise<void> {
    this.stopped = true;
    clearInterval(this.pollTimer);
    clearInterval(this.recoveryTimer);
    if (options.cancelRunning) for (const controller of this.running.values()) controller.abort();
    await Promise.allSettled([...this.finished]);
  }

  /** Stops a deploy this process runs at once (the store flag reaches other processes). */
  abort(deployId: number): void {
    this.running.get(deployId)?.abort();
  }

  /** Nudges the loop: called on new work, finished work, and by a timer (other processes enqueue too). */
  wake(): void {
    if (this.stopped) return;
    if (this.pumping) {
      this.pumpAgain = true;
      return;
    }
    this.pumping = true;
    void this.pump()
      .catch((error) => this.options.report(error))
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
      const deploy = await this.options.store.deploys.claimNext(this.options.owner, this.options.leaseMs);
      if (!deploy) return;
      const controller = new AbortController();
      this.running.set(deploy.id, controller);
      const done = this.execute(deploy, controller)
        .catch((error) => this.options.report(error))
        .finally(() => {
          this.running.delete(deploy.id);
          this.finished.delete(done);
          this.wake();
        });
      this.finished.add(done);
    }
  }

  private async execute(claimed: Deploy, controller: AbortController): Promise<void> {
    const { store, hub, owner } = this.options;
    const target = await this.targetForRun(claimed);
    const current = await store.releases.current(claimed.app, claimed.env);
    const previousSha = current ? (primarySha(target?.app, current.components) ?? null) : null;
    // A deploy runs with the configuration of the moment it starts (unless it
    // is pinned to a release's, as rollbacks are): record that revision.
    const configRevision = target?.pinned ? claimed.configRevision : this.options.config.current().revision;
    await store.deploys.update(claimed.id, owner, { previousSha, configRevision });
    const deploy: Deploy = { ...claimed, previousSha, configRevision };
    hub.emit({ type: "status", deploy });
    const masker = new SecretMasker([...this.options.secrets, ...(target ? appSecrets(target.app) : [])]);
    const log = new LogWriter(
      deploy.id,
      store.logs,
      hub,
      masker,
      this.options.logFlushMs,
      await store.logs.end(deploy.id),
    );

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
            await store.deploys.update(deploy.id, owner, { phase, ...(status ? { status } : {}) });
            shown = { ...shown, phase, ...(status ? { status } : {}) };
            hub.emit({ type: "status", deploy: shown });
          },
          setPid: (pid) => store.deploys.update(deploy.id, owner, { pid }),
          fleet: this.options.fleet,
          awaitApproval: (timeoutMs) => awaitApproval(store, deploy.id, timeoutMs, controller.signal),
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
    const finished = await store.deploys.finish(deploy.id, owner, {
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
            },
          }
        : {}),
    });
    hub.emit({ type: "status", deploy: finished });
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
      hub.emit({ type: "status", deploy: await store.deploys.get(deploy.id) });
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
