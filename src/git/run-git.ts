import { spawn } from "node:child_process";
import { TurnoutError } from "../domain/errors.js";
import type { SecretMasker } from "../domain/secrets.js";
import { withTransportPolicy } from "./git-env.js";
import { redactUrl } from "./remote-url.js";

/** Progress lines for a deploy log, already masked. */
export type GitOutput = (line: string) => void;

export interface RunGitOptions {
  /** What this command does, for the error message ("fetch of https://host/x"); must hold no secrets. */
  what: string;
  env: Record<string, string>;
  timeoutMs: number;
  masker: SecretMasker;
  cwd?: string;
  /** Fed on stdin, then closed; without it stdin is /dev/null. */
  input?: string;
  output?: GitOutput;
}

const STDERR_TAIL_LINES = 8;
const MAX_LINE = 500;

/**
 * Runs git with an argv array (never a shell), in its own process group so a
 * timeout kills git together with its helpers (ssh, git-remote-https). Stderr
 * is masked as a stream (domain/secrets.ts) before it is split into lines and
 * cut to length for the output or an error message.
 * Whatever environment the caller built, git gets Turnout's transport policy.
 * Resolves with stdout on exit 0, otherwise throws E_GIT.
 */
export function runGit(args: string[], options: RunGitOptions): Promise<string> {
  const clean = (line: string) => redactUrl(line).slice(0, MAX_LINE);
  const masked = options.masker.stream();
  return new Promise((resolve, reject) => {
    const child = spawn("git", args, {
      cwd: options.cwd,
      env: withTransportPolicy(options.env),
      shell: false,
      detached: true,
      stdio: [options.input === undefined ? "ignore" : "pipe", "pipe", "pipe"],
    });
    const stdout: Buffer[] = [];
    const tail: string[] = [];
    let partial = "";
    let timedOut = false;

    const takeLines = (text: string) => {
      const parts = (partial + text).split(/\r\n|\r|\n/);
      partial = parts.pop() ?? "";
      for (const raw of parts) emit(raw);
    };
    const emit = (raw: string) => {
      const line = clean(raw).trimEnd();
      if (line.length === 0) return;
      tail.push(line);
      if (tail.length > STDERR_TAIL_LINES) tail.shift();
      options.output?.(line);
    };
    const kill = () => {
      try {
        if (child.pid !== undefined) process.kill(-child.pid, "SIGKILL");
      } catch {
        // already gone
      }
    };

    const timer = setTimeout(() => {
      timedOut = true;
      kill();
    }, options.timeoutMs);

    child.stdout?.on("data", (chunk: Buffer) => stdout.push(chunk));
    child.stderr?.setEncoding("utf8");
    child.stderr?.on("data", (text: string) => takeLines(masked.push(text)));
    if (options.input !== undefined && child.stdin) {
      child.stdin.on("error", () => {}); // git may exit before reading it all; the exit code tells
      child.stdin.end(options.input);
    }
    child.on("error", (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      const why =
        err.code === "ENOENT"
          ? `could not start git (is it installed and on PATH${options.cwd ? `, does ${options.cwd} exist` : ""}?)`
          : clean(options.masker.mask(err.message));
      reject(new TurnoutError("E_GIT", `${options.what} failed: ${why}`));
    });
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      takeLines(masked.end());
      if (partial) emit(partial);
      partial = "";
      if (timedOut) {
        reject(new TurnoutError("E_GIT", `${options.what} timed out after ${formatMs(options.timeoutMs)}`));
        return;
      }
      if (code === 0) {
        resolve(Buffer.concat(stdout).toString("utf8"));
        return;
      }
      const status = code === null ? `killed by ${signal}` : `exit ${code}`;
      const detail = tail.length > 0 ? `: ${tail.join("; ")}` : "";
      reject(new TurnoutError("E_GIT", `${options.what} failed (${status})${detail}`, { exitCode: code }));
    });
  });
}

function formatMs(ms: number): string {
  return ms >= 1000 ? `${Math.round(ms / 1000)}s` : `${ms}ms`;
}
