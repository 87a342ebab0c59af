import { rm } from "node:fs/promises";
import path from "node:path";
import type { AppConfig, EnvironmentConfig } from "../domain/app-config.js";
import { type Deploy, deployLabel, type FailureCode } from "../domain/deploy.js";
import { formatDuration } from "../domain/duration.js";
import { isTurnoutError } from "../domain/errors.js";
import { releaseFingerprint } from "../domain/fingerprint.js";
import type { GitMirrors, GitRemote } from "../git/mirrors.js";
import type { RunResult } from "../providers/process-runner.js";
import { runShellDeploy } from "../providers/shell/shell-provider.js";
import type { Store } from "../store/store.js";
import type { LogWriter } from "./log-writer.js";

/**
 * The pipeline of one claimed deploy: workspace at the deploy's SHA, the
 * provider, then the outcome (a release on success). It returns the outcome
 * instead of writing it, so the caller — which holds the lease — decides
 * whether it may still record anything.
 */
export interface PipelineContext {
  deploy: Deploy;
  app: AppConfig;
  environment: EnvironmentConfig;
  store: Store;
  git: GitMirrors;
  log: LogWriter;
  workspacesDir: string;
  baseEnv: Record<string, string>;
  killGraceMs: number;
  signal: AbortSignal;
  setPhase(phase: string): Promise<void>;
  setPid(pid: number | null): Promise<void>;
}

export type PipelineOutcome =
  | { status: "succeeded"; fingerprint: string }
  | { status: "failed"; errorCode: FailureCode; errorMessage: string }
  | { status: "cancelled"; errorMessage: string };

export async function runPipeline(ctx: PipelineContext): Promise<PipelineOutcome> {
  const { deploy, log } = ctx;
  const started = Date.now();
  const remote: GitRemote = { url: ctx.app.repo, auth: ctx.app.auth };
  const workspaceDir = path.join(ctx.workspacesDir, String(deploy.id));
  log.line(
    `==> ${deployLabel(deploy)}: ${deploy.ref} at ${deploy.sha} (trigger ${deploy.trigger}, by ${deploy.user})`,
  );
  if (deploy.ignoredSafeties.length > 0)
    log.line(`==> ignoring safeties: ${deploy.ignoredSafeties.join(", ")}`);

  try {
    await ctx.setPhase("workspace");
    await rm(workspaceDir, { recursive: true, force: true });
    const output = (line: string) => log.line(line);
    try {
      await ctx.git.createWorkspace(remote, deploy.sha, workspaceDir, output);
    } catch {
      // The mirror may lack the commit (another server resolved it, or it was
      // pruned): fetch once and try again before giving up.
      await rm(workspaceDir, { recursive: true, force: true });
      log.line("==> fetching the repository");
      await ctx.git.fetch(remote, output);
      await ctx.git.createWorkspace(remote, deploy.sha, workspaceDir, output);
    }
    if (ctx.signal.aborted) return { status: "cancelled", errorMessage: "cancelled" };

    await ctx.setPhase("deploy");
    const config = ctx.environment.deploy;
    log.line(
      config.command
        ? `==> running ${JSON.stringify(config.command)}`
        : "==> running the deploy script (bash)",
    );
    const result = await runShellDeploy({
      app: ctx.app,
      config,
      deploy,
      workspace: workspaceDir,
      baseEnv: ctx.baseEnv,
      killGraceMs: ctx.killGraceMs,
      signal: ctx.signal,
      onOutput: (text) => log.write(text),
      onSpawn: (pid) => void ctx.setPid(pid),
    });
    await ctx.setPid(null);
    const outcome = outcomeOf(result, config.timeoutMs, config.idleTimeoutMs);
    if (outcome.status === "succeeded") {
      const fingerprint = releaseFingerprint(deploy.components, deploy.configRevision);
      log.line(
        `==> succeeded in ${formatDuration(Date.now() - started)} (release ${fingerprint.slice(0, 12)})`,
      );
      return { status: "succeeded", fingerprint };
    }
    log.line(`==> ${outcome.status}: ${outcome.errorMessage}`);
    return outcome;
  } catch (error) {
    if (ctx.signal.aborted) return { status: "cancelled", errorMessage: "cancelled" };
    const message = isTurnoutError(error) ? error.message : `internal error: ${(error as Error).message}`;
    const code: FailureCode =
      isTurnoutError(error) && error.code.startsWith("E_GIT") ? "git_failed" : "internal";
    log.line(`==> failed: ${message}`);
    return {
      status: "failed",
      errorCode: isTurnoutError(error) && error.code === "E_REF_NOT_FOUND" ? "git_failed" : code,
      errorMessage: message,
    };
  } finally {
    await rm(workspaceDir, { recursive: true, force: true }).catch(() => undefined);
  }
}

function outcomeOf(
  result: RunResult,
  timeoutMs: number,
  idleTimeoutMs: number,
): { status: "succeeded" } | Exclude<PipelineOutcome, { status: "succeeded" }> {
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
      return { status: "cancelled", errorMessage: "cancelled" };
    case "spawn_error":
      return {
        status: "failed",
        errorCode: "command_failed",
        errorMessage: `the command could not start: ${result.message}`,
      };
  }
}
