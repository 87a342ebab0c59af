import path from "node:path";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import { type ErrorCode, TurnoutError } from "../domain/errors.js";
import type { RetryPolicy } from "../domain/notify-retry.js";
import type { DeliveryUpdate } from "../store/notify-outbox.js";
import type { LinkedDelivery } from "./chain-sender.js";
import type { Channel, ChannelDelivery, ChannelResult } from "./channel.js";
import type { ChainTransport } from "./dispatcher.js";

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
  | { kind: "chains"; id: number; chains: LinkedDelivery[][] }
  | { kind: "abort"; id: number }
  | { kind: "close" };

/** Messages from the worker to the main thread. */
export type FromChannelWorker =
  | { kind: "ready" }
  | { kind: "refused"; code: ErrorCode; message: string }
  | { kind: "result"; id: number; result: ChannelResult }
  | { kind: "updates"; id: number; updates: DeliveryUpdate[] }
  | { kind: "report"; message: string }
  | { kind: "closed" };

export interface ChannelWorkerData {
  entries: ChannelEntry[];
  retry?: RetryPolicy;
  sendTimeoutMs?: number;
}

const HERE = fileURLToPath(import.meta.url);
// Under the tests (TypeScript sources) the thread runs the built file, as the manifest parser's does.
const WORKER_FILE = HERE.endsWith(".ts")
  ? path.resolve(path.dirname(HERE), "../../dist/notify/channel-worker.js")
  : path.join(path.dirname(HERE), "channel-worker.js");

/** How long a closing thread may take to close its channels (an IRC QUIT) before it is terminated. */
const CLOSE_GRACE_MS = 5_000;
/** How long after an unexpected exit the thread is started again. */
const RESTART_DELAY_MS = 1_000;

type Answer = { kind: "result"; result: ChannelResult } | { kind: "updates"; updates: DeliveryUpdate[] };

interface Pending {
  answer(answer: Answer): void;
  /** The answer when the thread goes away first: nothing lost, everything tried again. */
  lost(): Answer;
}

export class ChannelThread implements ChainTransport {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private readonly names: ReadonlySet<string>;
  private closing: Promise<void> | undefined;
  private worker: Worker | undefined;

  private constructor(
    private readonly data: ChannelWorkerData,
    private readonly report: (message: string) => void,
  ) {
    this.names = new Set(data.entries.map((e) => e.name));
  }

  /**
   * Starts the thread and makes its channels. Bad options refuse the start
   * with the channel factory's own error (E_CONFIG), as on the main thread.
   */
  static async start(
    entries: readonly ChannelEntry[],
    report: (message: string) => void,
    tuning: { retry?: RetryPolicy; sendTimeoutMs?: number } = {},
  ): Promise<ChannelThread> {
    const thread = new ChannelThread({ entries: [...entries], ...tuning }, report);
    await thread.spawn();
    return thread;
  }

  carries(channel: string): boolean {
    return this.names.has(channel);
  }

  /** The proxies, by name: each sends one delivery per message (the dispatcher sends whole chains instead). */
  channels(): Map<string, Channel> {
    return new Map(this.data.entries.map((entry) => [entry.name, this.proxy(entry)]));
  }

  /** A round's chains in one message; the outcomes come back in one. */
  sendChains(chains: LinkedDelivery[][]): Promise<DeliveryUpdate[]> {
    const lost = (): Answer => ({
      kind: "updates",
      // Back to pending, no attempt counted: they go out again with the next round.
      updates: chains.flat().map((d) => ({ id: d.id, outcome: "released" as const })),
    });
    return this.ask((id) => ({ kind: "chains", id, chains }), lost).then((a) =>
      a.kind === "updates" ? a.updates : [],
    );
  }

  /** Closes every channel in the thread (connections, an IRC QUIT), then ends it. */
  close(): Promise<void> {
    this.closing ??= this.closeThread();
    return this.closing;
  }

  private async spawn(): Promise<void> {
    const worker = new Worker(WORKER_FILE, { workerData: this.data });
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
    worker.on("message", (message: FromChannelWorker) => this.receive(message));
    worker.on("error", (error) => this.report(`notification thread failed: ${error.message}`));
    worker.on("exit", () => this.exited(worker));
    // An idle thread must not keep a stopping process alive.
    worker.unref();
    this.worker = worker;
  }

  private exited(worker: Worker): void {
    if (this.worker !== worker) return;
    this.worker = undefined;
    // Whatever was in flight is answered so it goes out again, never lost.
    for (const pending of this.pending.values()) pending.answer(pending.lost());
    this.pending.clear();
    if (this.closing) return;
    this.report(`notification thread stopped; starting it again in ${RESTART_DELAY_MS} ms`);
    const timer = setTimeout(() => {
      if (!this.closing) this.spawn().catch((error) => this.report(`notification thread: ${error.message}`));
    }, RESTART_DELAY_MS);
    timer.unref();
  }

  private async closeThread(): Promise<void> {
    const worker = this.worker;
    if (!worker) return;
    const closed = new Promise<void>((resolve) => {
      worker.on("message", (message: FromChannelWorker) => {
        if (message.kind === "closed") resolve();
      });
      worker.once("exit", () => resolve());
    });
    worker.postMessage({ kind: "close" } satisfies ToChannelWorker);
    const timer = setTimeout(() => void worker.terminate(), CLOSE_GRACE_MS);
    await closed;
    clearTimeout(timer);
    await worker.terminate();
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

  private async send(
    channel: string,
    delivery: ChannelDelivery,
    signal: AbortSignal,
  ): Promise<ChannelResult> {
    const stopped: ChannelResult = { outcome: "retry", reason: "the notification thread stopped" };
    const lost = (): Answer => ({ kind: "result", result: stopped });
    let id = 0;
    const onAbort = () => this.worker?.postMessage({ kind: "abort", id } satisfies ToChannelWorker);
    signal.addEventListener("abort", onAbort, { once: true });
    try {
      const answer = await this.ask((assigned) => {
        id = assigned;
        return { kind: "send", id, channel, delivery };
      }, lost);
      return answer.kind === "result" ? answer.result : stopped;
    } finally {
      signal.removeEventListener("abort", onAbort);
    }
  }

  private ask(message: (id: number) => ToChannelWorker, lost: () => Answer): Promise<Answer> {
    const worker = this.worker;
    if (!worker || this.closing) return Promise.resolve(lost());
    const id = this.nextId++;
    return new Promise<Answer>((resolve) => {
      this.pending.set(id, { answer: resolve, lost });
      worker.postMessage(message(id));
    });
  }

  private receive(message: FromChannelWorker): void {
    if (message.kind === "result" || message.kind === "updates") {
      const pending = this.pending.get(message.id);
      this.pending.delete(message.id);
      pending?.answer(
        message.kind === "result"
          ? { kind: "result", result: message.result }
          : { kind: "updates", updates: message.updates },
      );
    } else if (message.kind === "report") {
      this.report(message.message);
    }
  }
}
