import { type ChildProcessWithoutNullStreams, spawn } from "node:child_process";
import { withTransportPolicy } from "./git-env.js";

/**
 * One long-lived `git cat-file --batch-check` in a mirror, for resolving
 * refs: starting a process costs some 8 ms of the server's main thread on a
 * small VM (the parent waits for the child's exec), and every deploy request
 * resolves its ref right after its fetch. The process reads refs and objects
 * afresh for each line (loose refs from their files, packed-refs when its
 * file changed, packs again when an object is not found), so it answers what
 * a new process would; short SHAs, whose ambiguity git judges from a cache of
 * loose objects, are not asked here (mirrors.ts). An idle process is stopped
 * after IDLE_MS; any trouble stops it and the caller asks a new process.
 */
const IDLE_MS = 30_000;

export interface BatchCheckOptions {
  gitDir: string;
  env: Record<string, string>;
  timeoutMs: number;
}

interface Query {
  lines: number;
  answer: string[];
  resolve(lines: string[]): void;
  reject(error: Error): void;
}

export class BatchCheck {
  private child: ChildProcessWithoutNullStreams | undefined;
  private readonly queries: Query[] = [];
  private partial = "";
  private idleTimer: NodeJS.Timeout | undefined;
  private answerTimer: NodeJS.Timeout | undefined;

  constructor(private readonly options: BatchCheckOptions) {}

  /** One answer line per input line (`<sha> <type> <size>`, `<name> missing` or `<name> ambiguous`). */
  ask(input: string): Promise<string[]> {
    const lines = input.split("\n").filter((line) => line.length > 0);
    if (lines.some((line) => /\s/.test(line))) return Promise.reject(new Error("a name with whitespace"));
    return new Promise((resolve, reject) => {
      let child: ChildProcessWithoutNullStreams;
      try {
        child = this.process();
      } catch (error) {
        reject(error as Error);
        return;
      }
      clearTimeout(this.idleTimer);
      this.queries.push({ lines: lines.length, answer: [], resolve, reject });
      if (this.queries.length === 1) this.armTimeout();
      child.stdin.write(`${lines.join("\n")}\n`);
    });
  }

  /** Stops the process; queries in flight are refused (their callers ask a new process). */
  close(): void {
    this.stop(new Error("closed"));
  }

  private process(): ChildProcessWithoutNullStreams {
    if (this.child) return this.child;
    const child = spawn("git", ["-c", "core.disambiguate=commit", "cat-file", "--batch-check"], {
      cwd: this.options.gitDir,
      env: withTransportPolicy(this.options.env),
      shell: false,
      stdio: ["pipe", "pipe", "pipe"],
    });
    this.child = child;
    this.partial = "";
    // Never what keeps the server alive; stdin closing ends it when the server goes.
    child.unref();
    for (const stream of [child.stdin, child.stdout, child.stderr] as unknown as { unref?(): void }[]) {
      stream.unref?.();
    }
    child.stdout.setEncoding("utf8");
    child.stdout.on("data", (text: string) => this.take(child, text));
    child.stderr.resume();
    child.stdin.on("error", () => this.stop(new Error("git cat-file stopped"), child));
    child.on("error", (error) => this.stop(error, child));
    child.on("exit", (code, signal) =>
      this.stop(new Error(`git cat-file exited (${signal ?? code})`), child),
    );
    return child;
  }

  private take(child: ChildProcessWithoutNullStreams, text: string): void {
    if (child !== this.child) return;
    const parts = (this.partial + text).split("\n");
    this.partial = parts.pop() ?? "";
    for (const line of parts) {
      const query = this.queries[0];
      if (!query) {
        this.stop(new Error("git cat-file answered what was not asked"), child);
        return;
      }
      query.answer.push(line);
      if (query.answer.length === query.lines) {
        this.queries.shift();
        query.resolve(query.answer);
        clearTimeout(this.answerTimer);
        if (this.queries.length > 0) this.armTimeout();
        else this.armIdle();
      }
    }
  }

  private armTimeout(): void {
    clearTimeout(this.answerTimer);
    this.answerTimer = setTimeout(
      () => this.stop(new Error("git cat-file did not answer in time")),
      this.options.timeoutMs,
    );
    this.answerTimer.unref();
  }

  private armIdle(): void {
    clearTimeout(this.idleTimer);
    this.idleTimer = setTimeout(() => this.stop(new Error("idle")), IDLE_MS);
    this.idleTimer.unref();
  }

  private stop(error: Error, which?: ChildProcessWithoutNullStreams): void {
    const child = this.child;
    if (!child || (which !== undefined && which !== child)) return;
    this.child = undefined;
    clearTimeout(this.idleTimer);
    clearTimeout(this.answerTimer);
    for (const query of this.queries.splice(0)) query.reject(error);
    child.stdin.end();
    child.kill();
  }
}
