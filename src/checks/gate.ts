import { setTimeout as delay } from "node:timers/promises";
import type { ChecksConfig, GithubConfig } from "../domain/app-config.js";
import { formatDuration } from "../domain/duration.js";
import { isTurnoutError, TurnoutError } from "../domain/errors.js";
import type { SecretMasker } from "../domain/secrets.js";
import { runCheckCommandOnce } from "./check-command.js";
import type { CheckReport, CheckResult, CheckState } from "./check-report.js";
import type { GithubChecks } from "./github-checks.js";

/**
 * The CI gate of a deploy: before anything runs, wait until every required
 * check on the deploy's commit succeeded (GitHub statuses and check runs,
 * and/or the environment's `check_command`). One failed check fails the gate
 * at once; GitHub being unreachable does not (it is asked again until the
 * timeout), GitHub refusing the repository or token does (asking again will
 * not help).
 */
export type GateOutcome =
  | { ok: true; report: CheckReport | null }
  | {
      ok: false;
      code: "E_CHECKS_FAILED" | "E_CHECKS_TIMEOUT" | "cancelled";
      message: string;
      failed?: string;
    };

export interface GateOptions {
  config: ChecksConfig;
  github: GithubConfig | undefined;
  sha: string;
  /** `config.command` with its placeholders already substituted by the caller. */
  commandArgv?: string[];
  workspace: string;
  env: Record<string, string>;
  githubChecks: GithubChecks;
  /**
   * The deploy's secrets: the command's output is masked as a stream before
   * it is capped and cut into log lines (a cut through a secret would leave
   * a piece no later masking can recognise).
   */
  masker: SecretMasker;
  signal: AbortSignal;
  /** narration for the deploy log: one line when the state of any check changes (not every poll) */
  log(line: string): void;
  now?: () => number;
  sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
}

/** How the command's verdict is named in reports and messages. */
export const COMMAND_CHECK = "check_command";
/** Enough of a check command's output to explain it, not a flood repeated every poll. */
const MAX_OUTPUT_LINES = 100;
/** …and of characters kept per run (counted after masking). */
const MAX_OUTPUT_CHARS = 64 * 1024;
/** How long a look at GitHub taken at the deadline may still take. */
const LAST_LOOK_MS = 1000;

export async function waitForChecks(options: GateOptions): Promise<GateOutcome> {
  const { config, github, sha, signal, log } = options;
  const now = options.now ?? Date.now;
  const sleep = options.sleep ?? abortableSleep;
  const required = [...new Set(config.required)];
  if (config.command?.length && !options.commandArgv) {
    throw new TurnoutError("E_INTERNAL", "waitForChecks: check_command given without its substituted argv");
  }
  const argv = options.commandArgv?.length ? options.commandArgv : undefined;
  if (required.length === 0 && !argv) return { ok: true, report: null };
  if (required.length > 0 && !github) {
    return failed(
      `required checks ${required.join(", ")} are read from GitHub, but the app names no GitHub repository`,
    );
  }

  const deadline = now() + config.timeoutMs;
  const narrator = new Narrator(log);
  let githubDone = required.length === 0;
  let githubReport: CheckReport | null = null;
  let githubTrouble: string | undefined;
  let commandDone = !argv;
  let commandResult: CheckResult | undefined;
  const cancelled = (): GateOutcome => ({ ok: false, code: "cancelled", message: "checks: cancelled" });

  const names = [...required, ...(argv ? [COMMAND_CHECK] : [])].join(", ");
  log(`checks: waiting for ${names} on ${sha.slice(0, 12)} (timeout ${formatDuration(config.timeoutMs)})`);

  for (;;) {
    if (signal.aborted) return cancelled();

    if (!githubDone && github) {
      // The deadline bounds a slow request too, not only the sleeps between them; the
      // last look, taken at the deadline, still gets a moment to be answered.
      const round = AbortSignal.any([signal, AbortSignal.timeout(Math.max(LAST_LOOK_MS, deadline - now()))]);
      try {
        const report = await options.githubChecks.report(github, sha, required, { signal: round });
        if (githubTrouble !== undefined) log("checks: GitHub answers again");
        githubTrouble = undefined;
        githubReport = report;
        for (const check of report.checks) narrator.check(check);
        for (const name of report.missing) narrator.missing(name);
        if (report.state === "failure") {
          const check = report.checks.find((c) => c.name === report.failed);
          return failed(`check ${JSON.stringify(report.failed)} failed${explain(check)}`, report.failed);
        }
        githubDone = report.state === "success";
      } catch (error) {
        if (signal.aborted) return cancelled();
        if (!isTurnoutError(error)) throw error;
        if (error.details?.["retryable"] !== true) return failed(`checks: ${error.message}`);
        // A request cut short by the deadline says nothing about GitHub.
        if (now() < deadline) {
          // A GitHub hiccup is narrated once, not on every poll while it lasts.
          if (error.message !== githubTrouble) {
            log(`checks: ${error.message}; asking again every ${formatDuration(config.pollMs)}`);
          }
          githubTrouble = error.message;
        }
      }
    }

    if (signal.aborted) return cancelled();
    if (!commandDone && argv && now() < deadline) {
      let output = "";
      const masked = options.masker.stream();
      const keep = (text: string) => {
        if (output.length < MAX_OUTPUT_CHARS) output += text;
      };
      const outcome = await runCheckCommandOnce({
        argv,
        cwd: options.workspace,
        env: options.env,
        timeoutMs: deadline - now(),
        signal,
        onOutput: (text) => keep(masked.push(text)),
      });
      keep(masked.end());
      if (signal.aborted) return cancelled();
      // A run cut short by the deadline decided nothing: the timeout message keeps the last real answer.
      const cutShort = outcome.detail === "timed out" && commandResult !== undefined && now() >= deadline;
      if (!cutShort) {
        commandResult = {
          name: COMMAND_CHECK,
          state: outcome.state,
          source: "command",
          description: outcome.detail,
        };
        // Output matters when the verdict changes (above all when it fails), not on every "ask again".
        if (narrator.changed(commandResult)) logOutput(log, output);
        narrator.check(commandResult);
        if (outcome.state === "failure")
          return failed(`${COMMAND_CHECK} failed: ${outcome.detail}`, COMMAND_CHECK);
        commandDone = outcome.state === "success";
      }
    }

    if (githubDone && commandDone) {
      log("checks: all required checks passed");
      return { ok: true, report: finalReport(githubReport, commandResult) };
    }
    const left = deadline - now();
    if (left <= 0) {
      const waiting = stillWaiting(
        required,
        githubReport,
        githubTrouble,
        githubDone,
        commandResult,
        commandDone,
      );
      return {
        ok: false,
        code: "E_CHECKS_TIMEOUT",
        message: `checks did not pass within ${formatDuration(config.timeoutMs)}: ${waiting}`,
      };
    }
    try {
      await sleep(Math.min(config.pollMs, left), signal);
    } catch (error) {
      if (!signal.aborted) throw error;
    }
  }
}

function failed(message: string, name?: string): GateOutcome {
  return name === undefined
    ? { ok: false, code: "E_CHECKS_FAILED", message }
    : { ok: false, code: "E_CHECKS_FAILED", message, failed: name };
}

function explain(check: CheckResult | undefined): string {
  if (!check) return "";
  return `${check.description ? `: ${check.description}` : ""}${check.url ? ` (${check.url})` : ""}`;
}

function finalReport(github: CheckReport | null, command: CheckResult | undefined): CheckReport {
  const checks = [...(github?.checks ?? []), ...(command ? [command] : [])];
  return { state: "success", checks, missing: [] };
}

function stillWaiting(
  required: string[],
  report: CheckReport | null,
  trouble: string | undefined,
  githubDone: boolean,
  command: CheckResult | undefined,
  commandDone: boolean,
): string {
  const parts: string[] = [];
  if (!githubDone) {
    if (report) {
      for (const check of report.checks)
        if (check.state !== "success") parts.push(`${check.name} ${check.state}`);
      for (const name of report.missing) parts.push(`${name} not reported`);
    } else {
      parts.push(`${required.join(", ")} never read from GitHub`);
    }
    if (trouble) parts.push(`last GitHub error: ${trouble}`);
  }
  if (!commandDone)
    parts.push(`${COMMAND_CHECK} ${command ? (command.description ?? command.state) : "did not run"}`);
  return parts.join("; ");
}

/** Logs a line per check only when its state differs from what was logged before. */
class Narrator {
  private readonly states = new Map<string, CheckState | "missing">();

  constructor(private readonly log: (line: string) => void) {}

  changed(check: CheckResult): boolean {
    return this.states.get(check.name) !== check.state;
  }

  check(check: CheckResult): void {
    if (!this.changed(check)) return;
    this.states.set(check.name, check.state);
    this.log(`check ${check.name}: ${check.state}${explain(check)}`);
  }

  missing(name: string): void {
    if (this.states.get(name) === "missing") return;
    this.states.set(name, "missing");
    this.log(`check ${name}: not reported yet`);
  }
}

function logOutput(log: (line: string) => void, output: string): void {
  const lines = output.replace(/\n$/, "").split("\n");
  if (output.length === 0) return;
  for (const line of lines.slice(0, MAX_OUTPUT_LINES)) log(`${COMMAND_CHECK}| ${line}`);
  if (lines.length > MAX_OUTPUT_LINES)
    log(`${COMMAND_CHECK}| … ${lines.length - MAX_OUTPUT_LINES} more lines`);
}

async function abortableSleep(ms: number, signal: AbortSignal): Promise<void> {
  try {
    await delay(ms, undefined, { signal });
  } catch {
    // Aborted: the caller looks at the signal.
  }
}
