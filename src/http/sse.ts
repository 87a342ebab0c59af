import type { ServerResponse } from "node:http";
import { isFinished } from "../domain/deploy.js";
import type { DeployEvent, EngineApi } from "../engine/api.js";
import type { Store } from "../store/store.js";
import { toHttpError } from "./error-mapping.js";
import { deployJson } from "./serializers.js";

/**
 * A live tail of one deploy's log as Server-Sent Events.
 *
 * The store is the source of truth: whatever wakes the stream up (an engine
 * event in this process, or the poll that covers deploys run by another
 * server process), it sends exactly the bytes from the offset it has already
 * sent, so a byte is never sent twice or skipped. An event payload is used
 * directly only when it starts exactly where the stream stands (the engine
 * emits a chunk after storing it, so it is the stored text).
 */
export interface SseTiming {
  /** Store poll, the fallback for deploys run by another process. */
  pollMs: number;
  /** Comment lines that keep proxies from closing an idle stream. */
  heartbeatMs: number;
}

export const DEFAULT_SSE_TIMING: SseTiming = { pollMs: 1000, heartbeatMs: 15_000 };

export interface LogStreamOptions {
  store: Store;
  engine: EngineApi;
  deployId: number;
  /** First byte offset to send. */
  from: number;
  response: ServerResponse;
  timing: SseTiming;
  onError: (error: unknown) => void;
  onClose: () => void;
}

export class LogStream {
  private sent: number;
  private lastState: string | undefined;
  private busy = false;
  private again = false;
  private closed = false;
  private readonly timers: NodeJS.Timeout[] = [];
  private unsubscribe: (() => void) | undefined;

  constructor(private readonly o: LogStreamOptions) {
    this.sent = o.from;
  }

  start(): void {
    const { response } = this.o;
    response.writeHead(200, {
      "content-type": "text/event-stream; charset=utf-8",
      "cache-control": "no-cache, no-transform",
      connection: "keep-alive",
      // nginx and similar proxies buffer responses unless told not to.
      "x-accel-buffering": "no",
    });
    response.flushHeaders();
    // The response's "close" is the client going away (the request's fires
    // as soon as its empty body has been read).
    response.on("close", () => this.close());
    this.unsubscribe = this.o.engine.subscribe(this.o.deployId, (event) => this.onEvent(event));
    this.timers.push(setInterval(() => void this.pump(), this.o.timing.pollMs));
    this.timers.push(setInterval(() => this.write(": keep-alive\n\n"), this.o.timing.heartbeatMs));
    void this.pump();
  }

  /** Ends the stream (client gone, deploy finished, or server closing). Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const timer of this.timers) clearInterval(timer);
    this.unsubscribe?.();
    if (!this.o.response.writableEnded) this.o.response.end();
    this.o.onClose();
  }

  private onEvent(event: DeployEvent): void {
    if (this.closed) return;
    if (
      event.type === "log" &&
      !this.busy &&
      event.offset === this.sent &&
      !this.o.response.writableNeedDrain
    ) {
      this.sendLog(event.offset, event.text);
      return;
    }
    void this.pump();
  }

  /** Brings the client up to date with the store; concurrent wake-ups fold into one more round. */
  private async pump(): Promise<void> {
    if (this.closed) return;
    if (this.busy) {
      this.again = true;
      return;
    }
    this.busy = true;
    try {
      do {
        this.again = false;
        await this.catchUp();
      } while (this.again && !this.closed);
    } catch (error) {
      // Headers are out: the error is told as an event, in the API's error format, then the stream ends.
      const mapped = toHttpError(error);
      if (mapped.internal) this.o.onError(error);
      this.event("error", JSON.stringify(mapped.body));
      this.close();
    } finally {
      this.busy = false;
    }
  }

  private async catchUp(): Promise<void> {
    const { store, deployId } = this.o;
    // The deploy is read before the log: if it was finished then, every byte
    // it will ever have is already stored, and the reads below see them all.
    const deploy = await store.deploys.get(deployId);
    for (;;) {
      const { chunks, nextOffset } = await store.logs.read(deployId, this.sent);
      if (this.closed) return;
      let progressed = false;
      for (const [i, chunk] of chunks.entries()) {
        // Where a chunk ends comes from the store's offsets, not from the
        // decoded text: a start offset inside a multi-byte character decodes
        // to a replacement character of a different byte length.
        const end = chunks[i + 1]?.offset ?? nextOffset;
        if (chunk.offset !== this.sent || end <= chunk.offset) continue;
        this.sendLog(chunk.offset, chunk.text, end);
        progressed = true;
      }
      await this.drained();
      if (!progressed || this.closed) break;
    }
    if (isFinished(deploy.status)) {
      this.event("end", JSON.stringify({ deploy: deployJson(deploy) }));
      this.close();
      return;
    }
    const state = `${deploy.status}/${deploy.phase ?? ""}/${deploy.cancelRequested}`;
    if (state !== this.lastState) {
      this.lastState = state;
      this.event("status", JSON.stringify({ deploy: deployJson(deploy) }));
    }
  }

  private sendLog(offset: number, text: string, end = offset + Buffer.byteLength(text)): void {
    this.event("log", JSON.stringify({ offset, text }), end);
    this.sent = end;
  }

  private event(name: string, data: string, id?: number): void {
    this.write(`event: ${name}\n${id === undefined ? "" : `id: ${id}\n`}data: ${data}\n\n`);
  }

  private write(text: string): void {
    if (this.closed || this.o.response.writableEnded) return;
    this.o.response.write(text);
  }

  /** Waits while the socket is congested, so a slow client does not make the server buffer a whole log. */
  private drained(): Promise<void> {
    const { response } = this.o;
    if (!response.writableNeedDrain || this.closed) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        response.off("drain", done);
        response.off("close", done);
        resolve();
      };
      response.on("drain", done);
      response.on("close", done);
    });
  }
}
