import path from "node:path";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import type { ConfigProblem } from "../domain/app-config.js";
import { formatDuration } from "../domain/duration.js";
import { PARSE_TIMEOUT_MS, PARSER_HEAP_MB } from "./manifest-limits.js";
import type { LoadOptions, ManifestResult } from "./manifest-loader.js";

/**
 * Parses manifests off the server's main thread, one at a time, in a worker
 * thread with a heap limit and a time limit. Whatever a manifest holds, the
 * main thread only ever receives a plain result (the app or its problems):
 * a file that would take the parser too long or too much memory costs that
 * worker (stopped, and a new one started for the next file) and is refused
 * with a problem naming it. Requests, deploys and `/healthz` never wait on
 * a parse. Manifests change rarely, so an idle worker is stopped after
 * idleMs (it holds some 25 MB) and started again for the next change.
 */
export interface ManifestParserOptions {
  load: LoadOptions;
  /** Per manifest (default PARSE_TIMEOUT_MS). */
  timeoutMs?: number;
  /** The worker's heap (default PARSER_HEAP_MB). */
  heapMb?: number;
  /** How long an idle worker is kept (default 30 s). */
  idleMs?: number;
  /**
   * For tests: the worker waits before each parse while `hold[0]` is 0, so
   * the server can be observed while a parse is in progress.
   */
  hold?: Int32Array;
}

export interface ParserStats {
  /** Manifests the worker parsed (answered). */
  parsed: number;
  /** Parses stopped for time or memory. */
  stopped: number;
  /** Worker threads started so far. */
  workersStarted: number;
}

/** What the worker thread receives at start and per manifest, and answers. */
export interface ParserWorkerData {
  load: LoadOptions;
  hold?: Int32Array;
}
export interface ParseJob {
  id: number;
  file: string;
  text: string;
}
export interface ParseReply {
  id: number;
  result: ManifestResult;
}
/** The worker's first message: it has loaded the parser. */
export interface ParserReady {
  ready: true;
}

// From dist/ the worker is the module next to this one. From the TypeScript
// sources (as the tests run them) it is the built copy: a worker thread cannot load .ts.
const HERE = fileURLToPath(import.meta.url);
const WORKER_FILE = HERE.endsWith(".ts")
  ? path.resolve(path.dirname(HERE), "../../dist/config/manifest-worker.js")
  : path.join(path.dirname(HERE), "manifest-worker.js");

interface StartedWorker {
  thread: Worker;
  ready: Promise<void>;
}

/** How long a new worker may take to load the parser (a loaded machine is slow, not stuck). */
const BOOT_TIMEOUT_MS = 60_000;
const IDLE_MS = 30_000;

export class ManifestParser {
  private worker: StartedWorker | undefined;
  private queue: Promise<unknown> = Promise.resolve();
  private waiting = 0;
  private nextId = 1;
  private closed = false;
  private idleTimer: NodeJS.Timeout | undefined;
  private readonly counts: ParserStats = { parsed: 0, stopped: 0, workersStarted: 0 };
  private readonly timeoutMs: number;
  private readonly heapMb: number;

  constructor(private readonly options: ManifestParserOptions) {
    this.timeoutMs = options.timeoutMs ?? PARSE_TIMEOUT_MS;
    this.heapMb = options.heapMb ?? PARSER_HEAP_MB;
  }

  /** Parses one manifest; never rejects (a parser failure is a problem of that file). */
  parse(file: string, text: string): Promise<ManifestResult> {
    this.waiting += 1;
    clearTimeout(this.idleTimer);
    const run = this.queue.then(() => this.run(file, text));
    this.queue = run;
    return run.finally(() => {
      this.waiting -= 1;
      if (this.waiting > 0) return;
      // An idle worker must not keep a process alive that has nothing else to do.
      this.worker?.thread.unref();
      this.idleTimer = setTimeout(() => this.retire(), this.options.idleMs ?? IDLE_MS);
      this.idleTimer.unref();
    });
  }

  /** Manifests queued or being parsed. */
  pending(): number {
    return this.waiting;
  }

  /** Whether no worker thread is running (none started yet, or stopped when idle). */
  idle(): boolean {
    return this.worker === undefined;
  }

  stats(): ParserStats {
    return { ...this.counts };
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.idleTimer);
    const worker = this.worker;
    this.worker = undefined;
    await worker?.thread.terminate();
  }

  private async run(file: string, text: string): Promise<ManifestResult> {
    if (this.closed) return refused(file, "was not parsed: the server is stopping");
    let worker: Worker;
    try {
      const started = this.ensureWorker();
      await started.ready;
      worker = started.thread;
    } catch (error) {
      return refused(file, `could not be parsed: the parser did not start: ${(error as Error).message}`);
    }
    worker.ref();
    return new Promise((resolve) => {
      const id = this.nextId++;
      const finish = (result: ManifestResult) => {
        clearTimeout(timer);
        worker.off("message", onMessage);
        worker.off("error", onError);
        worker.off("exit", onExit);
        resolve(result);
      };
      const onMessage = (reply: ParseReply) => {
        if (reply.id !== id) return;
        this.counts.parsed += 1;
        finish(reply.result);
      };
      const onError = (error: Error & { code?: string }) => {
        this.discard(worker);
        if (error.code === "ERR_WORKER_OUT_OF_MEMORY") {
          this.counts.stopped += 1;
          finish(refused(file, `needs more than ${this.heapMb} MB of memory to parse; refused`));
        } else {
          finish(refused(file, `could not be parsed: ${error.message}`));
        }
      };
      const onExit = (code: number) => {
        this.discard(worker);
        finish(refused(file, `could not be parsed: the parser stopped (exit ${code})`));
      };
      // The time limit is the parse's own: it starts once the worker is up, not while it boots.
      const timer = setTimeout(() => {
        this.counts.stopped += 1;
        this.discard(worker);
        void worker.terminate();
        finish(refused(file, `took longer than ${formatDuration(this.timeoutMs)} to parse; refused`));
      }, this.timeoutMs);
      worker.on("message", onMessage);
      worker.on("error", onError);
      worker.on("exit", onExit);
      const job: ParseJob = { id, file, text };
      worker.postMessage(job);
    });
  }

  /** The worker thread, started if there is none; `ready` resolves once it has loaded the parser. */
  private ensureWorker(): StartedWorker {
    if (this.worker) return this.worker;
    const data: ParserWorkerData = {
      // A plain copy: process.env itself cannot be sent to a thread.
      load: { ...this.options.load, environment: { ...this.options.load.environment } },
      ...(this.options.hold ? { hold: this.options.hold } : {}),
    };
    const thread = new Worker(WORKER_FILE, {
      workerData: data,
      resourceLimits: { maxOldGenerationSizeMb: this.heapMb, maxYoungGenerationSizeMb: 32, stackSizeMb: 4 },
    });
    const ready = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        void thread.terminate();
        reject(new Error(`not ready after ${formatDuration(BOOT_TIMEOUT_MS)}`));
      }, BOOT_TIMEOUT_MS);
      thread.once("message", () => {
        clearTimeout(timer);
        resolve();
      });
      thread.once("error", (error) => {
        clearTimeout(timer);
        reject(error);
      });
      thread.once("exit", (code) => {
        clearTimeout(timer);
        reject(new Error(`exit ${code}`));
      });
    });
    ready.catch(() => undefined); // the job awaiting it reports the failure
    // Errors of a job are handled by that job; these keep one between jobs from being uncaught.
    thread.on("error", () => this.discard(thread));
    thread.on("exit", () => this.discard(thread));
    this.counts.workersStarted += 1;
    this.worker = { thread, ready };
    return this.worker;
  }

  /** Stops an idle worker; the next parse starts a new one. */
  private retire(): void {
    const worker = this.worker;
    if (this.waiting > 0 || !worker) return;
    this.worker = undefined;
    void worker.thread.terminate();
  }

  private discard(thread: Worker): void {
    if (this.worker?.thread === thread) this.worker = undefined;
  }
}

function refused(file: string, message: string): ManifestResult {
  const problem: ConfigProblem = { file, line: null, field: "(file)", message };
  return { problems: [problem] };
}
