import { spawn } from "node:child_process";

/**
 * Runs one command of a deploy: argv only (no shell), in its own process
 * group so that cancel and timeouts stop everything it started, with a total
 * and an idle (no output) timeout. SIGTERM first, SIGKILL after a grace period.
 */
export interface RunOptions {
  argv: readonly string[];
  cwd: string;
  env: Record<string, string>;
  timeoutMs: number;
  idleTimeoutMs: number;
  killGraceMs: number;
  onOutput(text: string): void;
  onSpawn?(pid: number): void;
  /** Aborting stops the process the same way a timeout does. */
  signal: AbortSignal;
}

export type RunResult =
  | { reason: "exit"; exitCode: number | null; signal: NodeJS.Signals | null }
  | { reason: "timeout" | "idle_timeout" | "aborted"; exitCode: number | null; signal: NodeJS.Signals | null }
  | { reason: "spawn_error"; message: string };

/** After the main process exits, how long its leftover children may keep the pipes open. */
const DRAIN_MS = 2000;

export function runProcess(options: RunOptions): Promise<RunResult> {
  return new Promise((resolve) => {
    const [program, ...args] = options.argv;
    const child = spawn(program!, args, {
      cwd: options.cwd,
      env: options.env,
      stdio: ["ignore", "pipe", "pipe"],
      detached: true, // a process group of its own: we signal the group, not just the leader
      shell: false,
    });
    let stopReason: "timeout" | "idle_timeout" | "aborted" | undefined;
    let exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
    let settled = false;
    let killTimer: NodeJS.Timeout | undefined;
    let drainTimer: NodeJS.Timeout | undefined;

    const signalGroup = (sig: NodeJS.Signals) => {
      if (child.pid === undefined) return;
      try {
        process.kill(-child.pid, sig);
      } catch {
        // The group is already gone.
      }
    };
    const stop = (reason: "timeout" | "idle_timeout" | "aborted") => {
      if (stopReason || settled) return;
      stopReason = reason;
      signalGroup("SIGTERM");
      killTimer = setTimeout(() => signalGroup("SIGKILL"), options.killGraceMs);
    };

    const total = setTimeout(() => stop("timeout"), options.timeoutMs);
    let idle = setTimeout(() => stop("idle_timeout"), options.idleTimeoutMs);
    const onActivity = () => {
      clearTimeout(idle);
      idle = setTimeout(() => stop("idle_timeout"), options.idleTimeoutMs);
    };
    const onAbort = () => stop("aborted");
    if (options.signal.aborted) queueMicrotask(onAbort);
    else options.signal.addEventListener("abort", onAbort, { once: true });

    const finish = (result: RunResult) => {
      if (settled) return;
      settled = true;
      clearTimeout(total);
      clearTimeout(idle);
      clearTimeout(drainTimer);
      options.signal.removeEventListener("abort", onAbort);
      // Leftovers of the group (daemonised children holding nothing we wait for) go too.
      signalGroup("SIGKILL");
      if (killTimer) clearTimeout(killTimer);
      resolve(result);
    };

    child.stdout.setEncoding("utf8");
    child.stderr.setEncoding("utf8");
    child.stdout.on("data", (text: string) => {
      onActivity();
      options.onOutput(text);
    });
    child.stderr.on("data", (text: string) => {
      onActivity();
      options.onOutput(text);
    });
    child.on("spawn", () => {
      if (child.pid !== undefined) options.onSpawn?.(child.pid);
    });
    child.on("error", (error) => finish({ reason: "spawn_error", message: error.message }));
    child.on("exit", (code, signal) => {
      exit = { code, signal };
      drainTimer = setTimeout(() => child.emit("close", code, signal), DRAIN_MS);
    });
    child.on("close", (code: number | null, signal: NodeJS.Signals | null) => {
      const result = exit ?? { code, signal };
      finish(
        stopReason
          ? { reason: stopReason, exitCode: result.code, signal: result.signal }
          : { reason: "exit", exitCode: result.code, signal: result.signal },
      );
    });
  });
}
