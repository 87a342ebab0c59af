import path from "node:path";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import { type ErrorCode, TurnoutError } from "../domain/errors.js";
import type { Channel, ChannelDelivery, ChannelResult } from "./channel.js";

/**
 * Channels that run in a worker thread of their own (channel-worker.ts),
 * each represented here by a proxy with the same `Channel` interface. Why:
 * a deploy queue is a chain run on the server's main thread, and every
 * millisecond a notification takes there (building the body, signing it,
 * the HTTP exchange) is a millisecond later for the next deploy. In the
 * thread, sending costs the main thread one message each way.
 *
 * Only channel types that need nothing of the server process but their own
 * settings go there (`ChannelFactory.portable`); GitHub Deployments reads the
 * store and the configuration, so it stays on the main thread.
 */
export interface ChannelEntry {
  name: string;
  type: string;
  options: Record<string, unknown>;
}

/** Messages from the main thread to the worker. */
export type ToChannelWorker =
  | { kind: "send"; id: number; channel: string; delivery: ChannelDelivery }
  | { kind: "abort"; id: number }
  | { kind: "close" };

/** Messages from the worker to the main thread. */
export type FromChannelWorker =
  | { kind: "ready" }
  | { kind: "refused"; code: ErrorCode; message: string }
  | { kind: "result"; id: number; result: ChannelResult }
  | { kind: "report"; message: string }
  | { kind: "closed" };

export interface ChannelWorkerData {
  entries: ChannelEntry[];
}

const HERE = fileURLToPath(import.meta.url);
// Under the tests (TypeScript sources) the thread runs the built file, as the manifest parser's does.
const WORKER_FILE = HERE.endsWith(".ts")
  ? path.resolve(path.dirname(HERE), "../../dist/notify/channel-worker.js")
  : path.join(path.dirname(HERE), "channel-worker.js");

/** How long a closing thread may take to close its channels (an IRC QUIT) before it is terminated. */
const CLOSE_GRACE_MS = 5_000;

export class ChannelThread {
  private nextId = 1;
  private readonly pending = new Map<number, (result: ChannelResult) => void>();
  private closing: Promise<void> | undefined;
  private exited = false;

  private constructor(
    private readonly worker: Worker,
    private readonly entries: readonly ChannelEntry[],
    private readonly report: (message: string) => void,
  ) {
    worker.on("message", (message: FromChannelWorker) => this.receive(message));
    worker.on("error", (error) => this.report(`notification thread failed: ${error.message}`));
    worker.on("exit", () => {
      this.exited = true;
      // Whatever was in flight is retried by the dispatcher's backoff, never lost.
      for (const resolve of this.pending.values()) {
        resolve({ outcome: "retry", reason: "the notification thread stopped" });
      }
      this.pending.clear();
    });
  }

  /**
   * Starts the thread and makes its channels. Bad options refuse the start
   * with the channel factory's own error (E_CONFIG), as on the main thread.
   */
  static async start(
    entries: readonly ChannelEntry[],
    report: (message: string) => void,
  ): Promise<ChannelThread> {
    const data: ChannelWorkerData = { entries: [...entries] };
    const worker = new Worker(WORKER_FILE, { workerData: data });
    const thread = new ChannelThread(worker, entries, report);
    await new Promise<void>((resolve, reject) => {
      const onMessage = (message: FromChannelWorker) => {
        if (message.kind === "ready") done(resolve);
        else if (message.kind === "refused")
          done(() => reject(new TurnoutError(message.code, message.message)));
      };
      const onExit = (code: number) =>
        done(() =>
          reject(new TurnoutError("E_INTERNAL", `the notification thread exited (${code}) while starting`)),
        );
      const done = (then: () => void) => {
        worker.off("message", onMessage);
        worker.off("exit", onExit);
        then();
      };
      worker.on("message", onMessage);
      worker.on("exit", onExit);
    }).catch(async (error) => {
      await worker.terminate();
      throw error;
    });
    // An idle thread must not keep a stopping process alive.
    worker.unref();
    return thread;
  }

  /** The proxies, by name: what the dispatcher sends through. */
  channels(): Map<string, Channel> {
    return new Map(this.entries.map((entry) => [entry.name, this.proxy(entry)]));
  }

  /** Closes every channel in the thread (connections, an IRC QUIT), then ends it. */
  close(): Promise<void> {
    this.closing ??= this.closeThread();
    return this.closing;
  }

  private async closeThread(): Promise<void> {
    if (this.exited) return;
    const closed = new Promise<void>((resolve) => {
      this.worker.on("message", (message: FromChannelWorker) => {
        if (message.kind === "closed") resolve();
      });
      this.worker.once("exit", () => resolve());
    });
    this.post({ kind: "close" });
    const timer = setTimeout(() => void this.worker.terminate(), CLOSE_GRACE_MS);
    await closed;
    clearTimeout(timer);
    await this.worker.terminate();
  }

  private proxy(entry: ChannelEntry): Channel {
    return {
      name: entry.name,
      type: entry.type,
      send: (delivery, signal) => this.send(entry.name, delivery, signal),
      // The thread closes all its channels at once (ChannelThread.close).
      close: () => this.close(),
    };
  }

  private send(channel: string, delivery: ChannelDelivery, signal: AbortSignal): Promise<ChannelResult> {
    if (this.exited || this.closing) {
      return Promise.resolve({ outcome: "retry", reason: "the notification thread is stopping" });
    }
    const id = this.nextId++;
    return new Promise<ChannelResult>((resolve) => {
      const onAbort = () => this.post({ kind: "abort", id });
      signal.addEventListener("abort", onAbort, { once: true });
      this.pending.set(id, (result) => {
        signal.removeEventListener("abort", onAbort);
        resolve(result);
      });
      this.post({ kind: "send", id, channel, delivery });
    });
  }

  private receive(message: FromChannelWorker): void {
    if (message.kind === "result") {
      const resolve = this.pending.get(message.id);
      this.pending.delete(message.id);
      resolve?.(message.result);
    } else if (message.kind === "report") {
      this.report(message.message);
    }
  }

  private post(message: ToChannelWorker): void {
    if (!this.exited) this.worker.postMessage(message);
  }
}
