import { constants } from "node:os";
import { setTimeout as sleep } from "node:timers/promises";
import { TurnoutError } from "../../domain/errors.js";
import type { HealthCheckConfig } from "../../domain/fleet.js";
import { healthUrlProblem } from "../../domain/fleet-rules.js";
import type { HostLog } from "../../providers/fleet/host-ops.js";
import { runProcess } from "../../providers/process-runner.js";

/**
 * Commands on the host (before_switch, restart, depool, pool, command health
 * checks): argv only, through the shared process runner (own process group,
 * timeout, abort), output forwarded line by line.
 */
export interface CommandContext {
  cwd: string;
  env: Record<string, string>;
  timeoutMs: number;
  killGraceMs: number;
  log: HostLog;
  signal: AbortSignal;
  /** How the command is named in log lines ("before_switch", "health"). */
  label: string;
}

/** Exit codes for outcomes without one, as shells report them. */
export const EXIT_TIMEOUT = 124;
export const EXIT_NOT_STARTED = 127;
export const EXIT_ABORTED = 130;

export function assertArgv(argv: unknown, what: string): string[] {
  if (
    !Array.isArray(argv) ||
    argv.length === 0 ||
    argv.some((arg) => typeof arg !== "string" || arg.includes("\0")) ||
    argv[0] === ""
  ) {
    throw new TurnoutError(
      "E_VALIDATION",
      `${what}: expected a non-empty argv (list of strings without NUL)`,
    );
  }
  return argv as string[];
}

export function assertTimeout(ms: unknown, what: string): number {
  if (typeof ms !== "number" || !Number.isFinite(ms) || ms <= 0) {
    throw new TurnoutError("E_VALIDATION", `${what}: expected a positive number of milliseconds`);
  }
  return ms;
}

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

export function assertEnv(env: unknown): Record<string, string> {
  if (env === undefined || env === null) return {};
  if (typeof env !== "object" || Array.isArray(env))
    throw new TurnoutError("E_VALIDATION", "env must be an object");
  for (const [name, value] of Object.entries(env)) {
    if (!ENV_NAME.test(name) || typeof value !== "string" || value.includes("\0")) {
      throw new TurnoutError("E_VALIDATION", `invalid environment variable ${JSON.stringify(name)}`);
    }
  }
  return env as Record<string, string>;
}

/** How much of a line without end is held before it goes out as a piece (see HostLog). */
export const MAX_LINE_PIECE = 16 * 1024;

/** Runs argv; resolves with its exit code (124 timeout, 127 could not start, 130 aborted, 128+n killed). */
export async function runCommand(argv: readonly string[], ctx: CommandContext): Promise<number> {
  let pending = "";
  const onOutput = (text: string) => {
    const lines = (pending + text).split("\n");
    pending = lines.pop() ?? "";
    for (const line of lines) ctx.log(line.replace(/\r$/, ""));
    // Never cut and dropped: a long line goes on in the next piece, so the server masks it whole.
    while (pending.length > MAX_LINE_PIECE) {
      const cut = pieceEnd(pending, MAX_LINE_PIECE);
      ctx.log(pending.slice(0, cut), true);
      pending = pending.slice(cut);
    }
  };
  const result = await runProcess({
    argv,
    cwd: ctx.cwd,
    env: ctx.env,
    timeoutMs: ctx.timeoutMs,
    idleTimeoutMs: ctx.timeoutMs, // one budget: a quiet restart is not a failure
    killGraceMs: ctx.killGraceMs,
    onOutput,
    signal: ctx.signal,
  });
  if (pending) ctx.log(pending.replace(/\r$/, ""));
  switch (result.reason) {
    case "spawn_error":
      ctx.log(`${ctx.label}: could not start ${argv[0]}: ${result.message}`);
      return EXIT_NOT_STARTED;
    case "timeout":
    case "idle_timeout":
      ctx.log(`${ctx.label}: timed out after ${ctx.timeoutMs} ms, stopped`);
      return EXIT_TIMEOUT;
    case "aborted":
      ctx.log(`${ctx.label}: aborted`);
      return EXIT_ABORTED;
    case "exit":
      if (result.exitCode !== null) return result.exitCode;
      return 128 + (result.signal ? (constants.signals[result.signal] ?? 0) : 0);
  }
}

/** Where to cut `text` at most `max` characters in: never between the halves of a surrogate pair. */
export function pieceEnd(text: string, max: number): number {
  const code = text.charCodeAt(max - 1);
  return code >= 0xd800 && code <= 0xdbff ? max - 1 : max;
}

export interface HealthContext {
  /** Where a command check runs (null: the app has no current release). */
  cwd: string | null;
  env: Record<string, string>;
  killGraceMs: number;
  log: HostLog;
  signal: AbortSignal;
}

/**
 * One try, then `retries` more, `intervalMs` apart; each try gets
 * `timeoutMs`. HTTP: a GET answered 2xx (redirects are not followed: a
 * redirect to a login page is not health). Command: exit 0.
 */
export async function checkHealth(check: HealthCheckConfig, ctx: HealthContext): Promise<boolean> {
  if ((check.http === undefined) === (check.command === undefined)) {
    throw new TurnoutError("E_VALIDATION", "a health check needs exactly one of http or command");
  }
  const url = check.http === undefined ? undefined : healthUrl(check.http);
  const argv = check.command === undefined ? undefined : assertArgv(check.command, "health command");
  const timeoutMs = assertTimeout(check.timeoutMs, "health timeout");
  const tries = Math.max(0, Math.floor(check.retries ?? 0)) + 1;
  for (let attempt = 1; attempt <= tries; attempt++) {
    if (ctx.signal.aborted) {
      ctx.log("health: aborted");
      return false;
    }
    const problem = url ? await httpTry(url, timeoutMs, ctx.signal) : await commandTry(argv!, timeoutMs, ctx);
    if (problem === undefined) {
      if (attempt > 1) ctx.log(`health: healthy on try ${attempt}/${tries}`);
      return true;
    }
    ctx.log(`health: try ${attempt}/${tries} failed: ${problem}`);
    if (attempt < tries) {
      try {
        await sleep(Math.max(0, check.intervalMs ?? 0), undefined, { signal: ctx.signal });
      } catch {
        ctx.log("health: aborted");
        return false;
      }
    }
  }
  return false;
}

function healthUrl(value: string): URL {
  const problem = healthUrlProblem(value);
  if (problem) throw new TurnoutError("E_VALIDATION", `health url ${JSON.stringify(value)}: ${problem}`);
  return new URL(value);
}

async function httpTry(url: URL, timeoutMs: number, signal: AbortSignal): Promise<string | undefined> {
  const timeout = AbortSignal.timeout(timeoutMs);
  try {
    const response = await fetch(url, { redirect: "manual", signal: AbortSignal.any([signal, timeout]) });
    await response.body?.cancel().catch(() => undefined);
    return response.status >= 200 && response.status < 300 ? undefined : `HTTP ${response.status}`;
  } catch (error) {
    if (timeout.aborted) return `no answer within ${timeoutMs} ms`;
    if (signal.aborted) return "aborted";
    const cause = (error as { cause?: { message?: string } }).cause;
    return cause?.message ?? (error as Error).message;
  }
}

async function commandTry(
  argv: readonly string[],
  timeoutMs: number,
  ctx: HealthContext,
): Promise<string | undefined> {
  if (ctx.cwd === null) return "the app has no current release";
  const code = await runCommand(argv, { ...ctx, cwd: ctx.cwd, timeoutMs, label: "health" });
  return code === 0 ? undefined : `exit code ${code}`;
}
