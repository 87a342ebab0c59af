import type { MaskingStream, SecretMasker } from "../domain/secrets.js";
import type { LogStore } from "../store/logs.js";
import type { EventHub } from "./event-hub.js";
import { LogChannel } from "./log-channel.js";

/**
 * Collects a deploy's output into ordered, offset-addressed chunks and stores
 * them at least every `flushMs` (and when a chunk grows large), so a crash
 * loses at most the last fraction of a second. Followers are told about
 * bytes only once they are stored: what a client has seen is never lost.
 *
 * Everything written is masked as one stream (domain/secrets.ts) before it
 * is buffered: a secret split between two reads, or inside a line of any
 * length, is still found. Lines are not held back: a partial line (a
 * progress bar, a prompt) is stored within `flushMs` like any other output,
 * except for a tail that could be the start of a secret (at most the longest
 * secret's length minus one), which waits for the text that decides it.
 *
 * Output that has a source of its own (one host of a fleet) goes through a
 * channel: masked on its own stream, then cut into prefixed lines.
 */
const MAX_CHUNK = 64 * 1024;

export class LogWriter {
  private pending = "";
  private offset: number;
  private seq: number;
  private timer: NodeJS.Timeout | undefined;
  private chain: Promise<void> = Promise.resolve();
  private failed: Error | undefined;
  private readonly stream: MaskingStream;
  /** Whether the text written so far ends a line (narration starts on a line of its own). */
  private atLineStart = true;
  private readonly channels = new Map<string, LogChannel>();

  constructor(
    private readonly deployId: number,
    private readonly logs: LogStore,
    private readonly hub: EventHub,
    private secrets: SecretMasker,
    private readonly flushMs: number,
    start: { offset: number; seq: number } = { offset: 0, seq: 0 },
  ) {
    this.offset = start.offset;
    this.seq = start.seq;
    this.stream = secrets.stream();
  }

  /** The secrets masked now: for output that must be masked before it is cut (check output, errors). */
  get masker(): SecretMasker {
    return this.secrets;
  }

  /** Adds values to mask from now on (e.g. a credential learnt mid-deploy). */
  addSecrets(values: string[]): void {
    this.secrets = this.secrets.with(values);
    this.stream.use(this.secrets);
    for (const channel of this.channels.values()) channel.use(this.secrets);
  }

  /** Raw output of a process: masked, buffered, stored within the flush interval. */
  write(text: string): void {
    if (text.length === 0) return;
    this.atLineStart = text.endsWith("\n");
    this.pending += this.stream.push(text);
    this.schedule();
  }

  /** One line of Turnout's own narration (phases, results), on a line of its own. */
  line(text: string): void {
    this.write(`${this.atLineStart ? "" : "\n"}${text}\n`);
  }

  /**
   * The channel of one source of output (one per prefix, e.g. `[web-1] `).
   * Its text is masked on its own stream, so a secret split between two of
   * its pieces is found whatever other output comes in between.
   */
  channel(prefix: string): LogChannel {
    let channel = this.channels.get(prefix);
    if (!channel) {
      channel = new LogChannel(prefix, this.secrets, (line) => this.line(line));
      this.channels.set(prefix, channel);
    }
    return channel;
  }

  /** Stores everything masked so far (not a tail that may still turn out to be a secret). */
  async flush(): Promise<void> {
    this.drain();
    await this.chain;
    if (this.failed) throw this.failed;
  }

  /** Ends every channel and the stream (what they held is shown now), and stores the rest. */
  async close(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    for (const channel of this.channels.values()) channel.end();
    if (!this.atLineStart) this.write("\n");
    this.pending += this.stream.end();
    await this.flush();
  }

  private schedule(): void {
    if (Buffer.byteLength(this.pending) >= MAX_CHUNK) {
      this.drain();
      return;
    }
    if (!this.timer && this.pending) {
      this.timer = setTimeout(() => {
        this.timer = undefined;
        this.drain();
      }, this.flushMs);
    }
  }

  private drain(): void {
    if (!this.pending) return;
    const text = this.pending;
    this.pending = "";
    const chunk = { seq: this.seq++, offset: this.offset, text };
    this.offset += Buffer.byteLength(text);
    this.chain = this.chain.then(async () => {
      try {
        await this.logs.append(this.deployId, chunk);
        this.hub.emit({ type: "log", deployId: this.deployId, offset: chunk.offset, text: chunk.text });
      } catch (error) {
        this.failed ??= error as Error;
      }
    });
  }
}
