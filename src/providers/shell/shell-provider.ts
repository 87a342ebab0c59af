import type { AppConfig, ShellDeployConfig } from "../../domain/app-config.js";
import { type Deploy, deployLabel } from "../../domain/deploy.js";
import {
  componentShaVariable,
  paramVariable,
  placeholderValues,
  substitute,
} from "../../domain/placeholders.js";
import { type RunResult, runProcess } from "../process-runner.js";

/**
 * The `shell` provider: runs the environment's command (argv with
 * placeholders) or script (bash, values only as TURNOUT_* variables) on the
 * server, in the deploy's workspace. No user-supplied text is ever parsed by
 * a shell: placeholders are replaced inside single argv elements, and a script
 * is the manifest's own text with values reaching it only through variables.
 */
export interface ShellRun {
  app: AppConfig;
  config: ShellDeployConfig;
  deploy: Deploy;
  workspace: string;
  /** Variables the server passes through to every command (PATH, HOME, …). */
  baseEnv: Record<string, string>;
  killGraceMs: number;
  signal: AbortSignal;
  onOutput(text: string): void;
  onSpawn(pid: number): void;
}

export async function runShellDeploy(run: ShellRun): Promise<RunResult> {
  const { deploy, config } = run;
  const argv = config.command
    ? substitute(config.command, placeholderValues(deploy))
    : [
        "bash",
        "--noprofile",
        "--norc",
        "-e",
        "-o",
        "pipefail",
        "-c",
        config.script!,
        `turnout:${deployLabel(deploy)}`,
      ];
  return runProcess({
    argv,
    cwd: run.workspace,
    env: commandEnvironment(run),
    timeoutMs: config.timeoutMs,
    idleTimeoutMs: config.idleTimeoutMs,
    killGraceMs: run.killGraceMs,
    signal: run.signal,
    onOutput: run.onOutput,
    onSpawn: run.onSpawn,
  });
}

/**
 * A deploy command sees a small, explicit environment rather than the
 * server's own (which may hold database URLs and tokens): a few basics, the
 * manifest's `env`, the app's `secret_env`, and the TURNOUT_* values.
 */
export function commandEnvironment(
  run: Pick<ShellRun, "app" | "deploy" | "workspace" | "baseEnv"> & {
    config: { env: Record<string, string> };
  },
): Record<string, string> {
  const { deploy } = run;
  const env: Record<string, string> = { ...run.baseEnv, ...run.config.env, ...run.app.secretEnv };
  env["TURNOUT_APP"] = deploy.app;
  env["TURNOUT_ENV"] = deploy.env;
  env["TURNOUT_SHA"] = deploy.sha;
  env["TURNOUT_REF"] = deploy.ref;
  env["TURNOUT_PREVIOUS_SHA"] = deploy.previousSha ?? "";
  env["TURNOUT_DEPLOY_ID"] = String(deploy.id);
  env["TURNOUT_DEPLOY_NUMBER"] = String(deploy.number);
  env["TURNOUT_WORKSPACE"] = run.workspace;
  env["TURNOUT_USER"] = deploy.user;
  env["TURNOUT_TRIGGER"] = deploy.trigger;
  for (const [name, sha] of Object.entries(deploy.components)) env[componentShaVariable(name)] = sha;
  for (const [name, value] of Object.entries(deploy.params)) env[paramVariable(name)] = value;
  return env;
}
