import { mkdir, rm } from "node:fs/promises";
import path from "node:path";
import { waitForChecks } from "../checks/gate.js";
import type { GithubChecks } from "../checks/github-checks.js";
import { type AppConfig, appSecrets, type ConfigSnapshot } from "../domain/app-config.js";
import { type Deploy, deployLabel, isFinished } from "../domain/deploy.js";
import { formatDuration } from "../domain/duration.js";
import { isTurnoutError } from "../domain/errors.js";
import { substitute } from "../domain/placeholders.js";
import {
  type GateStep,
  type PipelineRun,
  type PipelineStage,
  sameComponents,
} from "../domain/release-pipeline.js";
import { SecretMasker } from "../domain/secrets.js";
import type { GitMirrors } from "../git/mirrors.js";
import type { Store } from "../store/store.js";
import { remoteOf } from "./components.js";

/**
 * Drives every app's release pipeline (domain/release-pipeline.ts): on a
 * timer and whenever a deploy ends, it opens a run for each release that
 * went live in a stage and is not yet in the next, moves open runs through
 * their gate (bake, checks, approval), queues the promotion when the gate
 * passed, and closes runs when their promotion ends. Everything it decides
 * is in the store, so any server process — or this one after a restart —
 * goes on where the last look left off.
 */
export interface ReleasePipelineDeps {
  store: Store;
  config(): ConfigSnapshot;
  git: GitMirrors;
  githubChecks: GithubChecks;
  /** Where check commands get a checkout of the release (a directory of their own). */
  workDir: string;
  baseEnv: Record<string, string>;
  /** Queues the promotion of a run whose gate passed (trigger `pipeline`). */
  promote(app: AppConfig, run: PipelineRun): Promise<Deploy>;
  /** Told when a run changed (live pages). */
  changed(app: string): void;
  report(error: unknown): void;
  now?: () => number;
}

/** A run moving to `promoting` whose process died before queuing the deploy is taken up again after this. */
const STALE_CLAIM_MS = 60_000;

export class ReleasePipelines {
  private timer: NodeJS.Timeout | undefined;
  private ticking: Promise<void> | undefined;
  private again = false;
  private readonly checking = new Map<number, Promise<void>>();
  private readonly abort = new AbortController();
  private stopped = true;

  constructor(private readonly deps: ReleasePipelineDeps) {}

  start(intervalMs: number): void {
    this.stopped = false;
    this.timer = setInterval(() => this.poke(), intervalMs);
    this.poke();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    this.abort.abort();
    await this.ticking;
    await Promise.allSettled([...this.checking.values()]);
  }

  /** Looks again soon; calls while a look runs make one more after it. */
  poke(): void {
    if (this.stopped) return;
    if (this.ticking) {
      this.again = true;
      return;
    }
    this.ticking = this.tick()
      .catch((error) => this.deps.report(error))
      .finally(() => {
        this.ticking = undefined;
        if (this.again) {
          this.again = false;
          this.poke();
        }
      });
  }

  /** One look at every pipeline: new runs, then every open run moved as far as it can go. */
  async tick(): Promise<void> {
    for (const app of this.deps.config().apps.values()) {
      const stages = app.pipeline?.stages ?? [];
      for (let i = 1; i < stages.length; i++) {
        try {
          await this.follow(app, stages[i - 1]!.env, stages[i]!);
        } catch (error) {
          this.deps.report(error);
        }
      }
    }
    for (const run of await this.deps.store.pipelineRuns.unfinished()) {
      if (this.stopped) return;
      try {
        await this.advance(run);
      } catch (error) {
        this.deps.report(error);
      }
    }
  }

  private now(): number {
    return (this.deps.now ?? Date.now)();
  }

  /** Opens the run of the release live in `from` into `stage`, unless it is there already; supersedes older waits. */
  private async follow(app: AppConfig, from: string, stage: PipelineStage): Promise<void> {
    const { store } = this.deps;
    const source = await store.releases.current(app.name, from);
    if (!source) return;
    for (const run of await store.pipelineRuns.unfinished(app.name)) {
      if (run.env !== stage.env || run.sourceDeployId === source.deployId || run.status === "promoting")
        continue;
      if (
        await store.pipelineRuns.move(run.id, ["waiting", "approved"], {
          status: "superseded",
          waitingOn: null,
          message: `${app.name}/${from}#${source.deployNumber} is live in ${from} now`,
        })
      )
        this.deps.changed(app.name);
    }
    if (await store.pipelineRuns.bySource(app.name, stage.env, source.deployId)) return;
    const sourceDeploy = await store.deploys.get(source.deployId);
    // A rollback brings back what was: it is not a release moving forward.
    if (sourceDeploy.trigger === "rollback") return;
    const target = await store.releases.current(app.name, stage.env);
    if (target && sameComponents(target.components, source.components)) return;
    const opened = await store.pipelineRuns.open({
      app: app.name,
      env: stage.env,
      fromEnv: from,
      sourceDeployId: source.deployId,
      sourceNumber: source.deployNumber,
      sha: sourceDeploy.sha,
      components: source.components,
      bakeUntil: new Date(Date.parse(source.createdAt) + (stage.gate?.bakeMs ?? 0)).toISOString(),
    });
    if (opened) this.deps.changed(app.name);
  }

  private async advance(run: PipelineRun): Promise<void> {
    const { store } = this.deps;
    const runs = store.pipelineRuns;
    const app = this.deps.config().apps.get(run.app);
    const stage = app?.pipeline?.stages.find((s) => s.env === run.env);
    const moved = async (from: PipelineRun["status"][], change: Parameters<typeof runs.move>[2]) => {
      const done = await runs.move(run.id, from, change);
      if (done) this.deps.changed(run.app);
      return done;
    };
    if (run.status === "promoting") {
      if (run.deployId === null) {
        if (this.now() - Date.parse(run.updatedAt) > STALE_CLAIM_MS)
          await moved(["promoting"], { status: run.decidedBy ? "approved" : "waiting" });
        return;
      }
      const deploy = await store.deploys.get(run.deployId);
      if (!isFinished(deploy.status)) return;
      if (deploy.status === "succeeded") await moved(["promoting"], { status: "done", message: null });
      else
        await moved(["promoting"], {
          status: "failed",
          message: `${deployLabel(deploy)} ${deploy.status}${deploy.errorMessage ? `: ${deploy.errorMessage}` : ""}`,
        });
      return;
    }
    if (!app || !stage?.gate) {
      await moved(["waiting", "approved"], {
        status: "superseded",
        waitingOn: null,
        message: `${run.app}/${run.env} is no longer a stage after ${run.fromEnv} in the pipeline`,
      });
      return;
    }
    const source = await store.releases.current(run.app, run.fromEnv);
    if (source?.deployId !== run.sourceDeployId) {
      await moved(["waiting", "approved"], {
        status: "superseded",
        waitingOn: null,
        message: `${run.app}/${run.fromEnv}#${run.sourceNumber} is no longer live in ${run.fromEnv}`,
      });
      return;
    }
    const target = await store.releases.current(run.app, run.env);
    if (target && sameComponents(target.components, run.components)) {
      await moved(["waiting", "approved"], {
        status: "done",
        waitingOn: null,
        message: `already live in ${run.env}`,
      });
      return;
    }
    const gate = stage.gate;
    const waitOn = async (step: GateStep, extra: Parameters<typeof runs.move>[2] = {}) => {
      if (run.waitingOn !== step || Object.keys(extra).length > 0)
        await moved(["waiting", "approved"], { waitingOn: step, ...extra });
    };
    const now = this.now();
    if (now < Date.parse(run.bakeUntil)) return waitOn("bake");
    if (gate.checks && !run.checksPassed) {
      await waitOn("checks");
      this.startChecks(app, run);
      return;
    }
    if (gate.approval && run.status !== "approved") {
      if (run.approvalDeadline === null) {
        return waitOn("approval", {
          approvalDeadline: new Date(now + gate.approval.timeoutMs).toISOString(),
        });
      }
      if (now > Date.parse(run.approvalDeadline)) {
        await moved(["waiting"], {
          status: "timed_out",
          waitingOn: null,
          message: `nobody approved ${run.app}/${run.fromEnv}#${run.sourceNumber} for ${run.env} within ${formatDuration(gate.approval.timeoutMs)}`,
        });
      } else await waitOn("approval");
      return;
    }
    // Every gate passed: whoever moves the run to `promoting` queues the deploy.
    if (!(await runs.move(run.id, ["waiting", "approved"], { status: "promoting", waitingOn: null }))) return;
    try {
      const deploy = await this.deps.promote(app, run);
      await moved(["promoting"], { deployId: deploy.id, message: null });
    } catch (error) {
      const message = isTurnoutError(error) ? error.message : String(error);
      // A lock holds the line until it is lifted; anything else stops it here.
      const locked = isTurnoutError(error) && error.code === "E_LOCKED";
      await moved(
        ["promoting"],
        locked
          ? { status: run.status, waitingOn: "lock", message }
          : { status: "failed", message: `the promotion into ${run.env} was refused: ${message}` },
      );
    }
  }

  /** Runs the stage's checks on the release's commit once per run in this process; the outcome is stored. */
  private startChecks(app: AppConfig, run: PipelineRun): void {
    if (this.checking.has(run.id) || this.stopped) return;
    const done = this.runChecks(app, run)
      .catch((error) => this.deps.report(error))
      .finally(() => {
        this.checking.delete(run.id);
        this.poke();
      });
    this.checking.set(run.id, done);
  }

  private async runChecks(app: AppConfig, run: PipelineRun): Promise<void> {
    const checks = app.pipeline?.stages.find((s) => s.env === run.env)?.gate?.checks;
    if (!checks) return;
    const workspace = path.join(this.deps.workDir, String(run.id));
    const masker = new SecretMasker(appSecrets(app));
    const values = { app: app.name, env: run.env, sha: run.sha, ref: run.sha, previous_sha: "", deploy: "" };
    try {
      if (checks.command) {
        await rm(workspace, { recursive: true, force: true });
        const single = app.components.length === 1;
        if (!single) await mkdir(workspace, { recursive: true });
        for (const component of app.components) {
          const sha = run.components[component.name];
          if (!sha) continue;
          await this.deps.git.createWorkspace(
            remoteOf(component),
            sha,
            single ? workspace : path.join(workspace, component.name),
            undefined,
            masker.values,
          );
        }
      }
      const outcome = await waitForChecks({
        config: checks,
        github: app.github,
        sha: run.sha,
        ...(checks.command ? { commandArgv: substitute(checks.command, values) } : {}),
        workspace,
        env: {
          ...this.deps.baseEnv,
          TURNOUT_APP: app.name,
          TURNOUT_ENV: run.env,
          TURNOUT_FROM_ENV: run.fromEnv,
          TURNOUT_SHA: run.sha,
          TURNOUT_WORKSPACE: workspace,
        },
        githubChecks: this.deps.githubChecks,
        masker,
        signal: this.abort.signal,
        log: () => undefined,
      });
      if (outcome.ok)
        await this.deps.store.pipelineRuns.move(run.id, ["waiting", "approved"], { checksPassed: true });
      else if (outcome.code !== "cancelled")
        await this.deps.store.pipelineRuns.move(run.id, ["waiting", "approved"], {
          status: "failed",
          waitingOn: null,
          message: `checks before ${run.env} did not pass: ${masker.mask(outcome.message)}`,
        });
      this.deps.changed(run.app);
    } finally {
      await rm(workspace, { recursive: true, force: true }).catch(() => undefined);
    }
  }
}
