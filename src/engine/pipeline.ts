import { mkdir, rm } from "node:fs/promises";
import path from "node:path";
import { waitForChecks } from "../checks/gate.js";
import type { GithubChecks } from "../checks/github-checks.js";
import type {
  AppConfig,
  EnvironmentConfig,
  HerokuDeployConfig,
  ShellDeployConfig,
} from "../domain/app-config.js";
import { type Deploy, deployLabel, type FailureCode } from "../domain/deploy.js";
import { formatDuration } from "../domain/duration.js";
import { isTurnoutError } from "../domain/errors.js";
import { releaseFingerprint } from "../domain/fingerprint.js";
import type { FleetDeployConfig } from "../domain/fleet.js";
import { placeholderValues, substitute } from "../domain/placeholders.js";
import type { GitMirrors } from "../git/mirrors.js";
import { type FleetDeps, runFleetDeploy } from "../providers/fleet/fleet-provider.js";
import { runHerokuDeploy } from "../providers/heroku/heroku-provider.js";
import type { RunResult } from "../providers/process-runner.js";
import { commandEnvironment, runShellDeploy } from "../providers/shell/shell-provider.js";
import { remoteOf } from "./components.js";
import type { LogWriter } from "./log-writer.js";

/**
 * The pipeline of one claimed deploy: workspace at the deploy's commits, the
 * CI gate, the provider, then the outcome (a release on success). It returns
 * the outcome instead of writing it, so the caller — which holds the lease —
 * decides whether it may still record anything.
 */
export interface PipelineContext {
  deploy: Deploy;
  app: AppConfig;
  environment: EnvironmentConfig;
  git: GitMirrors;
  githubChecks: GithubChecks;
  log: LogWriter;
  workspacesDir: string;
  baseEnv: Record<string, string>;
  killGraceMs: number;
  signal: AbortSignal;
  setPhase(phase: string, status?: "waiting" | "running"): Promise<void>;
  setPid(pid: number | null): Promise<void>;
  /** Fleet deploys: where artifacts, agents and SSH hosts come from (absent: shell only). */
  fleet?: FleetDeps | undefined;
  /** Platform providers: the platform's release id of an earlier deploy of this environment (rollbacks). */
  providerReleaseOf?: ((deployNumber: number) => Promise<string | null>) | undefined;
  /** Fleet deploys with `approval`: waits for `turnout approve|abort`. */
  awaitApproval(timeoutMs: number): Promise<"approved" | "aborted" | "timeout">;
}

export type PipelineOutcome =
  | { status: "succeeded"; fingerprint: string; artifact?: string; providerRelease?: string }
  | { status: "failed"; errorCode: FailureCode; errorMessage: string }
  | { status: "cancelled"; errorMessage: string };

const CANCELLED: PipelineOutcome = { status: "cancelled", errorMessage: "cancelled" };

export async function runPipeline(ctx: PipelineContext): Promise<PipelineOutcome> {
  const { deploy, log } = ctx;
  const started = Date.now();
  const workspaceDir = path.join(ctx.workspacesDir, String(deploy.id));
  log.line(
    `==> ${deployLabel(deploy)}: ${describeTarget(ctx)} (trigger ${deploy.trigger}, by ${deploy.user})`,
  );
  if (deploy.ignoredSafeties.length > 0)
    log.line(`==> ignoring safeties: ${deploy.ignoredSafeties.join(", ")}`);

  // Made on first use: a fleet release with nothing to build is read from
  // the mirror and never needs a checkout (see fleet-provider's artifactFor).
  let made: Promise<void> | undefined;
  const ensureWorkspace = async (): Promise<string> => {
    made ??= makeWorkspace(ctx, workspaceDir);
    await made;
    return workspaceDir;
  };
  try {
    await ctx.setPhase("workspace");
    if (ctx.environment.deploy.provider === "shell" || ctx.environment.checks?.command) {
      await ensureWorkspace();
      if (ctx.signal.aborted) return CANCELLED;
    }

    const gate = await runGate(ctx, workspaceDir);
    if (gate) return gate;

    await ctx.setPhase("deploy", "running");
    // Per-app revision: editing another app's manifest never changes this
    // release's identity. (A deploy recorded before it existed has none.)
    const settings = deploy.appRevision ?? deploy.configRevision;
    const fingerprint = releaseFingerprint(deploy.components, settings);
    const deployConfig = ctx.environment.deploy;
    const outcome =
      deployConfig.provider === "fleet"
        ? await runFleetStep(ctx, deployConfig, workspaceDir, ensureWorkspace, fingerprint)
        : deployConfig.provider === "heroku"
          ? await runHerokuStep(ctx, deployConfig, ensureWorkspace)
          : await runShellStep(ctx, deployConfig, workspaceDir);
    if (outcome.status === "succeeded") {
      // A fleet release is also what was installed: its artifact.
      const release = outcome.artifact
        ? releaseFingerprint(deploy.components, settings, outcome.artifact)
        : fingerprint;
      log.line(`==> succeeded in ${formatDuration(Date.now() - started)} (release ${release.slice(0, 12)})`);
      return { ...outcome, fingerprint: release };
    }
    if (outcome.status === "failed") log.line(`==> failed: ${outcome.errorMessage}`);
    return outcome;
  } catch (error) {
    if (ctx.signal.aborted) return CANCELLED;
    const message = isTurnoutError(error) ? error.message : `internal error: ${(error as Error).message}`;
    const gitTrouble = isTurnoutError(error) && (error.code === "E_GIT" || error.code === "E_REF_NOT_FOUND");
    log.line(`==> failed: ${message}`);
    return { status: "failed", errorCode: gitTrouble ? "git_failed" : "internal", errorMessage: message };
  } finally {
    await rm(workspaceDir, { recursive: true, force: true }).catch(() => undefined);
  }
}

type StepOutcome =
  | { status: "succeeded"; artifact?: string; providerRelease?: string }
  | Exclude<PipelineOutcome, { status: "succeeded" }>;

async function runShellStep(
  ctx: PipelineContext,
  config: ShellDeployConfig,
  workspace: string,
): Promise<StepOutcome> {
  // The command as it will run, placeholders filled in (secrets in it are masked by the log writer).
  ctx.log.line(
    config.command
      ? `==> running ${JSON.stringify(substitute(config.command, placeholderValues(ctx.deploy)))}`
      : "==> running the deploy script (bash)",
  );
  const result = await runShellDeploy({
    app: ctx.app,
    config,
    deploy: ctx.deploy,
    workspace,
    baseEnv: ctx.baseEnv,
    killGraceMs: ctx.killGraceMs,
    signal: ctx.signal,
    onOutput: (text) => ctx.log.write(text),
    onSpawn: (pid) => void ctx.setPid(pid),
  });
  await ctx.setPid(null);
  return outcomeOf(result, config.timeoutMs, config.idleTimeoutMs);
}

async function runHerokuStep(
  ctx: PipelineContext,
  config: HerokuDeployConfig,
  ensureWorkspace: () => Promise<string>,
): Promise<StepOutcome> {
  const rollbackOf = ctx.deploy.rollbackOf;
  return runHerokuDeploy({
    deploy: ctx.deploy,
    config,
    apiKey: ctx.app.providerSecrets?.[config.apiKeyEnv],
    ensureWorkspace,
    rollbackTo: rollbackOf !== null && ctx.providerReleaseOf ? await ctx.providerReleaseOf(rollbackOf) : null,
    baseEnv: ctx.baseEnv,
    log: (line) => ctx.log.line(line),
    write: (text) => ctx.log.write(text),
    signal: ctx.signal,
    setPhase: (phase) => ctx.setPhase(phase),
  });
}

async function runFleetStep(
  ctx: PipelineContext,
  config: FleetDeployConfig,
  workspace: string,
  ensureWorkspace: () => Promise<string>,
  fingerprint: string,
): Promise<StepOutcome> {
  if (!ctx.fleet)
    return {
      status: "failed",
      errorCode: "internal",
      errorMessage: "this server has no fleet support configured",
    };
  const outcome = await runFleetDeploy(ctx.fleet, {
    deploy: ctx.deploy,
    app: ctx.app,
    config,
    workspace,
    ensureWorkspace,
    ...(ctx.app.components.length === 1
      ? { gitTree: ctx.git.treeReader(remoteOf(ctx.app.components[0]!), ctx.deploy.sha) }
      : {}),
    env: commandEnvironment({ app: ctx.app, config, deploy: ctx.deploy, workspace, baseEnv: ctx.baseEnv }),
    baseEnv: ctx.baseEnv,
    killGraceMs: ctx.killGraceMs,
    log: (line) => ctx.log.line(line),
    hostLog: (name) => {
      const channel = ctx.log.channel(`[${name}] `);
      return (line, continued) => channel.line(line, continued);
    },
    mask: (text) => ctx.log.masker.mask(text),
    write: (text) => ctx.log.write(text),
    signal: ctx.signal,
    fingerprint,
    repair: ctx.deploy.trigger === "reconcile" || ctx.deploy.trigger === "rollback",
    setPhase: ctx.setPhase,
    awaitApproval: ctx.awaitApproval,
  });
  return outcome.status === "succeeded" ? { status: "succeeded", artifact: outcome.artifact } : outcome;
}

function describeTarget({ app, deploy }: PipelineContext): string {
  const commits =
    app.components.length === 1
      ? deploy.sha
      : app.components.map((c) => `${c.name} ${deploy.components[c.name]?.slice(0, 12) ?? "?"}`).join(", ");
  if (deploy.rollbackOf !== null) return `rolling back to the release of #${deploy.rollbackOf} (${commits})`;
  return app.components.length === 1 ? `${deploy.ref} at ${commits}` : commits;
}

/**
 * A single-repo app's workspace is its checkout; a multi-repo app's workspace
 * holds one checkout per component, named after it.
 */
async function makeWorkspace(ctx: PipelineContext, dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
  const output = (line: string) => ctx.log.line(line);
  const single = ctx.app.components.length === 1;
  if (!single) await mkdir(dir, { recursive: true });
  for (const component of ctx.app.components) {
    const sha = ctx.deploy.components[component.name];
    if (!sha) throw new Error(`the deploy has no commit for component '${component.name}'`);
    await ctx.git.createWorkspace(
      remoteOf(component),
      sha,
      single ? dir : path.join(dir, component.name),
      output,
      ctx.log.masker.values,
    );
  }
}

/** The CI gate; undefined when the deploy may go on. */
async function runGate(ctx: PipelineContext, workspace: string): Promise<PipelineOutcome | undefined> {
  const checks = ctx.environment.checks;
  if (!checks || ctx.deploy.ignoredSafeties.includes("checks")) return undefined;
  await ctx.setPhase("checks", "waiting");
  const names = [...checks.required, ...(checks.command ? ["check_command"] : [])];
  ctx.log.line(`==> waiting for checks on ${ctx.deploy.sha.slice(0, 12)}: ${names.join(", ")}`);
  const env = commandEnvironment({
    app: ctx.app,
    config: ctx.environment.deploy,
    deploy: ctx.deploy,
    workspace,
    baseEnv: ctx.baseEnv,
  });
  const outcome = await waitForChecks({
    config: checks,
    github: ctx.app.github,
    sha: ctx.deploy.sha,
    ...(checks.command ? { commandArgv: substitute(checks.command, placeholderValues(ctx.deploy)) } : {}),
    workspace,
    env,
    githubChecks: ctx.githubChecks,
    masker: ctx.log.masker,
    signal: ctx.signal,
    log: (line) => ctx.log.line(`    ${line}`),
  });
  if (outcome.ok) {
    ctx.log.line("==> checks passed");
    return undefined;
  }
  if (outcome.code === "cancelled") return CANCELLED;
  ctx.log.line(`==> failed: ${outcome.message}`);
  return { status: "failed", errorCode: outcome.code, errorMessage: outcome.message };
}

function outcomeOf(result: RunResult, timeoutMs: number, idleTimeoutMs: number): StepOutcome {
  switch (result.reason) {
    case "exit":
      if (result.exitCode === 0) return { status: "succeeded" };
      return {
        status: "failed",
        errorCode: "command_failed",
        errorMessage: result.signal
          ? `the command was killed by ${result.signal}`
          : `the command exited with status ${result.exitCode}`,
      };
    case "timeout":
      return {
        status: "failed",
        errorCode: "timeout",
        errorMessage: `the command ran longer than ${formatDuration(timeoutMs)}`,
      };
    case "idle_timeout":
      return {
        status: "failed",
        errorCode: "idle_timeout",
        errorMessage: `the command printed nothing for ${formatDuration(idleTimeoutMs)}`,
      };
    case "aborted":
      return CANCELLED;
    case "spawn_error":
      return {
        status: "failed",
        errorCode: "command_failed",
        errorMessage: `the command could not start: ${result.message}`,
      };
  }
}
