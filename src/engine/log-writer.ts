import type { SecretMasker } from "../domain/secrets.js";
import type { LogStore } from "../store/logs.js";
import type { EventHub } from "./event-hub.js";

/**
 * Collects a deploy's output into ordered, offset-addressed chunks and stores
 * them at least every `flushMs` (and when a chunk grows large), so a crash
 * loses at most the last fraction of a second. Masking works on whole lines,
 * so a partial line is held until its newline arrives (or it grows past
 * MAX_PARTIAL, or the writer closes). Followers are told about bytes only
 * once they are stored: what a client has seen is never lost.
 */
const MAX_CHUNK = 64 * 1024;
const MAX_PARTIAL = 16 * 1024;

export class LogWriter {
  private pending = "";
  private partial = "";
  private offset: number;
  private seq: number;
  private timer: NodeJS.Timeout | undefined;
  private chain: Promise<void> = Promise.resolve();
  private failed: Error | undefined;

  constructor(
    private readonly deployId: number,
    private readonly logs: LogStore,
    private readonly hub: EventHub,
    private masker: SecretMasker,
    private readonly flushMs: number,
    start: { offset: number; seq: number } = { offset: 0, seq: 0 },
  ) {
    this.offset = start.offset;
    this.seq = start.seq;
  }

  /** Adds values to mask from now on (e.g. a credential learnt mid-deploy). */
  addSecrets(values: string[]): void {
    this.masker = this.masker.with(values);
  }

  /** Raw output of a process: split into lines, masked, buffered. */
  write(text: string): void {
    const data = this.partial + text;
    const lastNewline = data.lastIndexOf("\n");
    if (lastNewline === -1) {
      this.partial = data;
    } else {
      this.pending += this.masker.mask(data.slice(0, lastNewline + 1));
      this.partial = data.slice(lastNewline + 1);
    }
    if (this.partial.length > MAX_PARTIAL) {
      this.pending += `${this.masker.mask(this.partial)}\n`;
      this.partial = "";
    }
    this.schedule();
  }

  /** One line of Turnout's own narration (phases, results). */
  line(text: string): void {
    this.write(`${this.partial ? "\n" : ""}${text}\n`);
  }

  /** Stores everything buffered so far, the partial line included. */
  async flush(): Promise<void> {
    if (this.partial) {
      this.pending += `${this.masker.mask(this.partial)}\n`;
      this.partial = "";
    }
    this.drain();
    await this.chain;
    if (this.failed) throw this.failed;
  }

  async close(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
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
