import { MAX_TIMER_MS } from "../domain/duration.js";
import { runProcess } from "../providers/process-runner.js";
import type { CheckState } from "./check-report.js";

/**
 * `check_command`: a local gate for CI systems GitHub does not hear about. It
 * runs in the deploy's workspace like a deploy command (argv, own process
 * group, killed on timeout or cancel) and answers with its exit status:
 * 0 passes, 75 (EX_TEMPFAIL, sysexits.h) means "not decided yet, ask again
 * later", anything else fails.
 */
export const EX_TEMPFAIL = 75;

export interface CheckCommandOptions {
  argv: string[];
  cwd: string;
  env: Record<string, string>;
  timeoutMs: number;
  signal: AbortSignal;
  onOutput(text: string): void;
  /** SIGTERM → SIGKILL grace on timeout or cancel; default 5 s. */
  killGraceMs?: number;
}

export interface CheckCommandOutcome {
  state: CheckState;
  /** Why, for the deploy log: "exit 0", "exit 75 (not decided yet)", "timed out", … */
  detail: string;
}

const DEFAULT_KILL_GRACE_MS = 5000;

export async function runCheckCommand(options: CheckCommandOptions): Promise<CheckState> {
  return (await runCheckCommandOnce(options)).state;
}

/**
 * One run with the reason attached. A run stopped by its timeout or by abort
 * is "pending": it decided nothing, and the gate knows whether the deadline
 * passed or the deploy was cancelled.
 */
export async function runCheckCommandOnce(options: CheckCommandOptions): Promise<CheckCommandOutcome> {
  if (options.argv.length === 0) return { state: "failure", detail: "empty check_command" };
  const timeoutMs = Math.min(Math.max(1, options.timeoutMs), MAX_TIMER_MS);
  const result = await runProcess({
    argv: options.argv,
    cwd: options.cwd,
    env: options.env,
    timeoutMs,
    // A check may legitimately sit silent while it asks some CI system: only the total timeout applies.
    idleTimeoutMs: timeoutMs,
    killGraceMs: options.killGraceMs ?? DEFAULT_KILL_GRACE_MS,
    signal: options.signal,
    onOutput: options.onOutput,
  });
  switch (result.reason) {
    case "spawn_error":
      return { state: "failure", detail: `could not start: ${result.message}` };
    case "aborted":
      return { state: "pending", detail: "stopped" };
    case "timeout":
    case "idle_timeout":
      return { state: "pending", detail: "timed out" };
    case "exit":
      if (result.exitCode === 0) return { state: "success", detail: "exit 0" };
      if (result.exitCode === EX_TEMPFAIL) return { state: "pending", detail: "exit 75 (not decided yet)" };
      return {
        state: "failure",
        detail: result.exitCode === null ? `killed by ${result.signal}` : `exit ${result.exitCode}`,
      };
  }
}
