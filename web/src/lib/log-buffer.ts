import { ANSI_RESET, type AnsiState, parseAnsi, stripAnsi } from "./ansi.js";

/** What the log view renders from: lines by index, and the colour state each line starts with. */
export interface LogSource {
  readonly length: number;
  /** Grows with every change, so views know to render again. */
  readonly version: number;
  line(index: number): string;
  carry(index: number): AnsiState;
  /** Index in the whole log (for line numbers). */
  lineNumber(index: number): number;
}

/**
 * A deploy's log as lines, appended chunk by chunk as it streams in. Each
 * line is scanned for colour codes once, when it arrives, so that any line
 * can be drawn on its own with the colours that were active where it
 * starts: what makes drawing only the visible lines possible.
 */
export class LogBuffer implements LogSource {
  private readonly lines: string[] = [];
  private readonly carries: AnsiState[] = [];
  private partial = "";
  private endState: AnsiState = ANSI_RESET;
  version = 0;

  get length(): number {
    return this.lines.length + (this.partial ? 1 : 0);
  }

  append(text: string): void {
    if (!text) return;
    const parts = (this.partial + text).split("\n");
    this.partial = parts.pop() ?? "";
    for (const raw of parts) {
      const line = raw.endsWith("\r") ? raw.slice(0, -1) : raw;
      this.carries.push(this.endState);
      if (line.includes("\x1b")) this.endState = parseAnsi(line, this.endState).end;
      this.lines.push(line);
    }
    this.version++;
  }

  line(index: number): string {
    return index < this.lines.length ? this.lines[index]! : this.partial;
  }

  carry(index: number): AnsiState {
    return index < this.carries.length ? this.carries[index]! : this.endState;
  }

  lineNumber(index: number): number {
    return index + 1;
  }

  /** The whole log as plain text (colour codes removed), for downloading. */
  text(): string {
    const all = this.partial ? [...this.lines, this.partial] : this.lines;
    return `${all.map(stripAnsi).join("\n")}\n`;
  }
}

/** The lines of a source that pass a test (one host's output), kept up to date as the source grows. */
export class FilteredLog implements LogSource {
  private readonly indexes: number[] = [];
  private scanned = 0;
  private seen = -1;

  constructor(
    private readonly source: LogSource,
    private readonly keep: (plain: string) => boolean,
  ) {}

  private refresh(): void {
    if (this.seen === this.source.version) return;
    this.seen = this.source.version;
    // The last line may have been partial: scan it again.
    if (this.indexes.length > 0 && this.indexes[this.indexes.length - 1] === this.scanned - 1)
      this.indexes.pop();
    this.scanned = Math.max(0, this.scanned - 1);
    for (; this.scanned < this.source.length; this.scanned++) {
      if (this.keep(stripAnsi(this.source.line(this.scanned)))) this.indexes.push(this.scanned);
    }
  }

  get version(): number {
    return this.source.version;
  }

  get length(): number {
    this.refresh();
    return this.indexes.length;
  }

  line(index: number): string {
    this.refresh();
    return this.source.line(this.indexes[index]!);
  }

  carry(index: number): AnsiState {
    return this.source.carry(this.indexes[index]!);
  }

  lineNumber(index: number): number {
    return this.source.lineNumber(this.indexes[index]!);
  }
}
