import { setTimeout as sleep } from "node:timers/promises";
import { createParser, type EventSourceMessage } from "eventsource-parser";
import { type ApiClient, ApiError, ConnectionError } from "./api-client.js";
import type { DeployJson, LogChunk, LogResponse } from "./api-types.js";
import type { Output } from "./context.js";
import { Progress } from "./progress.js";
import { CONTROLS, jsonText, LogTextFilter, type TerminalText } from "./terminal-text.js";

/**
 * Follows one deploy's log until it finishes: `GET /deploys/:id/log` as a
 * server-sent event stream. The position is a byte offset, sent back as
 * `?offset=` and `Last-Event-ID` on every reconnect, and chunks that overlap
 * what was already printed are trimmed, so a dropped connection neither loses
 * nor repeats output. Reconnects back off and give up after a minute without
 * any sign of the server.
 */
export interface FollowOptions {
  client: ApiClient;
  deployId: number;
  stdout: Output;
  stderr: Output;
  /** Print newline-delimited JSON events instead of text. */
  json: boolean;
  /** The deploy as last seen, for the progress line before the stream says anything. */
  initial?: DeployJson | undefined;
  /** Byte offset to start from (0: the whole log). */
  offset?: number;
  giveUpAfterMs?: number;
  /** Delay between polls when the server answers with JSON instead of a stream. */
  pollMs?: number;
}

const MAX_BACKOFF_MS = 5000;
/** A connection that stayed up this long counts as healthy even if it said nothing. */
const HEALTHY_MS = 5000;

export async function followDeploy(options: FollowOptions): Promise<DeployJson> {
  const follower = new Follower(options);
  try {
    return await follower.run();
  } finally {
    follower.progress?.stop();
  }
}

class Follower {
  readonly progress: Progress | undefined;
  #offset: number;
  #ended: DeployJson | undefined;
  #lastSign = Date.now();
  #sawEvent = false;
  readonly #filter = new LogTextFilter();

  constructor(private readonly o: FollowOptions) {
    this.#offset = o.offset ?? 0;
    this.progress = o.json ? undefined : new Progress(o.stderr);
    if (o.initial && this.progress) this.progress.update(o.initial);
  }

  async run(): Promise<DeployJson> {
    const giveUpAfter = this.o.giveUpAfterMs ?? 60_000;
    let delay = 250;
    for (;;) {
      let failure: unknown;
      const openedAt = Date.now();
      this.#sawEvent = false;
      try {
        const mode = await this.#connect();
        if (this.#ended) return this.#finish(this.#ended);
        if (mode === "poll") {
          this.#lastSign = Date.now();
          delay = 250;
          await sleep(this.o.pollMs ?? 1000);
          continue;
        }
      } catch (error) {
        if (!isRetryable(error)) throw error;
        failure = error;
      }
      if (this.#ended) return this.#finish(this.#ended);
      if (this.#sawEvent || Date.now() - openedAt >= HEALTHY_MS) {
        this.#lastSign = Date.now();
        delay = 250;
      }
      if (Date.now() - this.#lastSign > giveUpAfter) {
        throw failure ?? new ConnectionError(this.o.client.server, undefined);
      }
      await sleep(delay);
      delay = Math.min(delay * 2, MAX_BACKOFF_MS);
    }
  }

  /** One connection: "stream" when it ended (normally or not), "poll" after a JSON answer. */
  async #connect(): Promise<"stream" | "poll"> {
    const response = await this.o.client.fetch(`/api/v1/deploys/${this.o.deployId}/log`, {
      method: "GET",
      query: { offset: this.#offset },
      headers: { accept: "text/event-stream", "last-event-id": String(this.#offset) },
    });
    if (!response.ok) {
      // Let the regular client turn the body into an ApiError.
      const text = await response.text().catch(() => "");
      throw errorFrom(response, text);
    }
    const type = response.headers.get("content-type") ?? "";
    if (!type.includes("text/event-stream")) {
      let page: LogResponse;
      try {
        page = JSON.parse(await response.text()) as LogResponse;
      } catch (error) {
        throw new ConnectionError(this.o.client.server, error);
      }
      for (const chunk of page.chunks) this.#log(chunk);
      if (typeof page.nextOffset === "number") this.#offset = Math.max(this.#offset, page.nextOffset);
      if (page.complete) {
        const { body } = await this.o.client.get<{ deploy: DeployJson }>(
          `/api/v1/deploys/${this.o.deployId}`,
        );
        this.#end(body.deploy);
      }
      return "poll";
    }
    if (!response.body) return "stream";

    const parser = createParser({ onEvent: (event) => this.#onEvent(event) });
    const decoder = new TextDecoder();
    const reader = response.body.getReader();
    try {
      while (!this.#ended) {
        const { done, value } = await reader.read();
        if (done) break;
        parser.feed(decoder.decode(value, { stream: true }));
      }
    } catch (error) {
      throw new ConnectionError(this.o.client.server, error);
    } finally {
      await reader.cancel().catch(() => {});
    }
    return "stream";
  }

  #onEvent(event: EventSourceMessage): void {
    let data: unknown;
    try {
      data = JSON.parse(event.data);
    } catch {
      return; // comments and keep-alives are not JSON; nothing to do
    }
    this.#sawEvent = true;
    this.#lastSign = Date.now();
    if (event.event === "log") this.#log(data as LogChunk);
    else if (event.event === "status") this.#status((data as { deploy: DeployJson }).deploy);
    else if (event.event === "end") this.#end((data as { deploy: DeployJson }).deploy);
  }

  #log(chunk: LogChunk): void {
    if (typeof chunk?.offset !== "number" || typeof chunk.text !== "string") return;
    let bytes = Buffer.from(chunk.text, "utf8");
    const end = chunk.offset + bytes.length;
    if (end <= this.#offset) return; // already printed before a reconnect
    if (chunk.offset < this.#offset) bytes = bytes.subarray(this.#offset - chunk.offset);
    this.#offset = end;
    const text = bytes.toString("utf8");
    if (this.o.json) {
      this.#emit({ event: "log", offset: end - bytes.length, text });
      return;
    }
    this.#print(this.#filter.push(text));
  }

  /** Log text, filtered for the terminal (colour kept, other escape sequences shown escaped). */
  #print(shown: TerminalText): void {
    if (shown.length === 0) return;
    this.progress?.beforeLog();
    this.o.stdout.write(shown);
    this.progress?.afterLog(shown);
  }

  #status(deploy: DeployJson | undefined): void {
    if (!deploy) return;
    if (this.o.json) this.#emit({ event: "status", deploy });
    else this.progress?.update(deploy);
  }

  #end(deploy: DeployJson | undefined): void {
    if (!deploy) return;
    if (this.o.json) this.#emit({ event: "end", deploy });
    this.#ended = deploy;
  }

  #emit(value: unknown): void {
    this.o.stdout.write(jsonText(`${JSON.stringify(value)}\n`));
  }

  #finish(deploy: DeployJson): DeployJson {
    if (!this.o.json) this.#print(this.#filter.end());
    this.progress?.stop();
    if (!this.o.json && this.progress && !this.progress.logAtLineStart) this.o.stdout.write(CONTROLS.newline);
    return deploy;
  }
}

function errorFrom(response: Response, text: string): ApiError {
  try {
    const body = JSON.parse(text) as { error?: { code?: string; message?: string } };
    if (body.error?.code) {
      return new ApiError(response.status, body.error.code, body.error.message ?? body.error.code);
    }
  } catch {
    // not JSON: fall through to the status line
  }
  return new ApiError(response.status, `HTTP_${response.status}`, `HTTP ${response.status}`);
}

/** Worth another try: the network, or the server saying it is busy or restarting. */
function isRetryable(error: unknown): boolean {
  if (error instanceof ConnectionError) return true;
  if (error instanceof ApiError) return error.status >= 500 || error.status === 429 || error.status === 408;
  return false;
}
