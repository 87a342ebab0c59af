import type { MaskingStream, SecretMasker } from "../domain/secrets.js";

/**
 * One source of output inside a deploy log (one host of a fleet): its text
 * is masked on a stream of its own first, and only then cut into lines that
 * carry its prefix. Masking first is what makes the cuts safe: a line too
 * long to keep whole, or a piece of one that arrived in several messages,
 * can split a mask but never a secret. (Prefixing first would put `[web-1] `
 * into the middle of a secret printed across two pieces.)
 */
export const MAX_CHANNEL_LINE = 16 * 1024;

export class LogChannel {
  private readonly stream: MaskingStream;
  private partial = "";

  constructor(
    private readonly prefix: string,
    secrets: SecretMasker,
    private readonly emit: (line: string) => void,
  ) {
    this.stream = secrets.stream();
  }

  use(secrets: SecretMasker): void {
    this.stream.use(secrets);
  }

  /** A line of this source's output; `continued`: a piece of a line whose rest comes in the next call. */
  line(text: string, continued = false): void {
    this.take(this.stream.push(continued ? text : `${text}\n`));
  }

  /** Shows what the stream held and a last partial line. */
  end(): void {
    this.take(this.stream.end());
    if (this.partial) this.emit(`${this.prefix}${this.partial}`);
    this.partial = "";
  }

  private take(masked: string): void {
    if (masked.length === 0) return;
    const lines = (this.partial + masked).split("\n");
    this.partial = lines.pop() ?? "";
    for (const line of lines) this.emit(`${this.prefix}${line}`);
    // A line without end is shown in pieces rather than held without bound.
    while (this.partial.length > MAX_CHANNEL_LINE) {
      let cut = MAX_CHANNEL_LINE;
      const code = this.partial.charCodeAt(cut - 1);
      if (code >= 0xd800 && code <= 0xdbff) cut--; // never between the halves of a surrogate pair
      this.emit(`${this.prefix}${this.partial.slice(0, cut)}`);
      this.partial = this.partial.slice(cut);
    }
  }
}
