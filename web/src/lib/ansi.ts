/**
 * A small parser for the ANSI SGR sequences deploy logs use (colours, bold,
 * dim, italic, underline, 256-colour and truecolour), producing styled
 * segments. Everything else an escape sequence could do (titles, cursor
 * movement, clipboard) is dropped, never interpreted.
 */
export interface AnsiStyle {
  fg?: string;
  bg?: string;
  bold?: boolean;
  dim?: boolean;
  italic?: boolean;
  underline?: boolean;
}

export interface AnsiSegment {
  text: string;
  style: AnsiStyle | null;
  /** A CSS class for the basic 16 colours (themed), instead of a literal colour. */
  classes: string;
}

// ESC [ params final — and OSC (ESC ] … BEL or ST), and lone escapes.
const SEQUENCE = /\x1b\[([0-9;:]*)([@-~])|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-_]?/g;

const CUBE = [0, 95, 135, 175, 215, 255];

function xterm256(n: number): string | undefined {
  if (n < 16) return undefined;
  if (n < 232) {
    const i = n - 16;
    return `rgb(${CUBE[Math.floor(i / 36)]},${CUBE[Math.floor(i / 6) % 6]},${CUBE[i % 6]})`;
  }
  const v = 8 + (n - 232) * 10;
  return `rgb(${v},${v},${v})`;
}

interface State {
  fg: number | string | undefined;
  bg: number | string | undefined;
  bold: boolean;
  dim: boolean;
  italic: boolean;
  underline: boolean;
}

const RESET: State = {
  fg: undefined,
  bg: undefined,
  bold: false,
  dim: false,
  italic: false,
  underline: false,
};

function apply(state: State, params: number[]): State {
  const next = { ...state };
  if (params.length === 0) return { ...RESET };
  for (let i = 0; i < params.length; i++) {
    const p = params[i]!;
    if (p === 0) Object.assign(next, RESET);
    else if (p === 1) next.bold = true;
    else if (p === 2) next.dim = true;
    else if (p === 3) next.italic = true;
    else if (p === 4) next.underline = true;
    else if (p === 22) next.bold = next.dim = false;
    else if (p === 23) next.italic = false;
    else if (p === 24) next.underline = false;
    else if (p >= 30 && p <= 37) next.fg = p - 30;
    else if (p >= 90 && p <= 97) next.fg = p - 90 + 8;
    else if (p === 39) next.fg = undefined;
    else if (p >= 40 && p <= 47) next.bg = p - 40;
    else if (p >= 100 && p <= 107) next.bg = p - 100 + 8;
    else if (p === 49) next.bg = undefined;
    else if (p === 38 || p === 48) {
      const key = p === 38 ? "fg" : "bg";
      if (params[i + 1] === 5 && params[i + 2] !== undefined) {
        const n = params[i + 2]!;
        next[key] = n < 16 ? n : xterm256(n);
        i += 2;
      } else if (params[i + 1] === 2 && params[i + 4] !== undefined) {
        const [r, g, b] = [params[i + 2]!, params[i + 3]!, params[i + 4]!].map((v) => Math.min(255, v));
        next[key] = `rgb(${r},${g},${b})`;
        i += 4;
      }
    }
  }
  return next;
}

function segmentOf(text: string, state: State): AnsiSegment {
  const classes: string[] = [];
  const style: AnsiStyle = {};
  if (typeof state.fg === "number") classes.push(`ansi-fg${state.fg}`);
  else if (state.fg) style.fg = state.fg;
  if (typeof state.bg === "number") classes.push(`ansi-bg${state.bg}`);
  else if (state.bg) style.bg = state.bg;
  if (state.bold) classes.push("ansi-bold");
  if (state.dim) classes.push("ansi-dim");
  if (state.italic) classes.push("ansi-italic");
  if (state.underline) classes.push("ansi-underline");
  return { text, classes: classes.join(" "), style: style.fg || style.bg ? style : null };
}

/** Parses one line; `carry` is the style the previous line ended with (SGR state spans lines). */
export function parseAnsi(line: string, carry: State = RESET): { segments: AnsiSegment[]; end: State } {
  const segments: AnsiSegment[] = [];
  let state = carry;
  let last = 0;
  SEQUENCE.lastIndex = 0;
  for (let match = SEQUENCE.exec(line); match; match = SEQUENCE.exec(line)) {
    if (match.index > last) segments.push(segmentOf(line.slice(last, match.index), state));
    if (match[2] === "m") {
      const params = (match[1] ?? "")
        .split(/[;:]/)
        .filter((p) => p !== "")
        .map((p) => Number(p));
      state = apply(state, params);
    }
    last = SEQUENCE.lastIndex;
  }
  if (last < line.length) segments.push(segmentOf(line.slice(last), state));
  return { segments, end: state };
}

/** The text without any escape sequence (search, download, host filters). */
export function stripAnsi(line: string): string {
  return line.includes("\x1b") ? line.replace(SEQUENCE, "") : line;
}

export type AnsiState = State;
export const ANSI_RESET: AnsiState = RESET;
