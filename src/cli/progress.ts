import type { DeployJson } from "./api-types.js";
import type { Output } from "./context.js";
import { progressLine } from "./output.js";
import { CONTROLS, joinLines, t } from "./terminal-text.js";

/**
 * The status of a followed deploy, on stderr so stdout carries only the log.
 * On a terminal it is one line redrawn in place (and cleared before any log
 * text, which would otherwise land in the middle of it); elsewhere (CI logs,
 * pipes) it is a plain line each time the status or phase changes, since a
 * ticking clock would only add noise there.
 */
export class Progress {
  readonly #out: Output;
  readonly #tty: boolean;
  readonly #now: () => number;
  #deploy: DeployJson | undefined;
  #shown = false;
  #lastKey = "";
  /** Whether the log printed so far ends a line: only then may we draw below it. */
  #logAtLineStart = true;
  #timer: NodeJS.Timeout | undefined;

  constructor(out: Output, options: { tty?: boolean; now?: () => number } = {}) {
    this.#out = out;
    this.#tty = options.tty ?? out.isTTY === true;
    this.#now = options.now ?? Date.now;
  }

  update(deploy: DeployJson): void {
    this.#deploy = deploy;
    if (this.#tty) {
      this.#draw();
      if (!this.#timer) {
        this.#timer = setInterval(() => this.#draw(), 1000);
        this.#timer.unref();
      }
      return;
    }
    const key = `${deploy.status}/${deploy.phase ?? ""}`;
    if (key !== this.#lastKey) {
      this.#lastKey = key;
      this.#out.write(t`${progressLine(deploy, this.#now())}\n`);
    }
  }

  /** Call around every write of log text to stdout. */
  beforeLog(): void {
    this.#clear();
  }

  afterLog(text: string): void {
    if (text.length > 0) this.#logAtLineStart = text.endsWith("\n");
    if (this.#tty) this.#draw();
  }

  /** Whether the log left the cursor mid-line (the caller adds a newline before its last line). */
  get logAtLineStart(): boolean {
    return this.#logAtLineStart;
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    this.#clear();
  }

  #draw(): void {
    if (!this.#deploy || !this.#logAtLineStart) return;
    this.#out.write(joinLines([CONTROLS.clearLine, progressLine(this.#deploy, this.#now())], ""));
    this.#shown = true;
  }

  #clear(): void {
    if (!this.#shown) return;
    this.#out.write(CONTROLS.clearLine);
    this.#shown = false;
  }
}
