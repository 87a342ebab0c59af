/**
 * What the CLI may write to a terminal. Text from the server (lock reasons,
 * error messages, names, refs, users, host names, labels, problems, commit
 * subjects) is data, and data must never drive the terminal: an escape
 * sequence in a lock reason could set the clipboard (OSC 52), retitle the
 * window, move the cursor or clear the screen, and a newline or carriage
 * return could forge a line of output.
 *
 * The rule is enforced by the type: every Output takes `TerminalText`, and
 * the only ways to make one are the functions here, which escape every value
 * they are given. Literal text in the CLI's own code goes through the `t`
 * template tag, which trusts the literal parts and escapes each value.
 *
 * Escaped: C0 controls (tab, newline and carriage return as `\t`, `\n`, `\r`,
 * the rest as `\xHH`), DEL and C1 controls (`\x7f`, `\x80`…`\x9f`), and the
 * Unicode controls that reorder or break lines (bidi embeddings, overrides,
 * isolates and marks; line and paragraph separators) as `\u{HHHH}`.
 *
 * Deploy logs are the exception that keeps formatting: see LogTextFilter.
 */
declare const SAFE: unique symbol;
export type TerminalText = string & { readonly [SAFE]: true };

const CONTROL = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;
const NAMED: Record<string, string> = { "\t": "\\t", "\n": "\\n", "\r": "\\r" };

function escapeChar(char: string): string {
  const named = NAMED[char];
  if (named) return named;
  const code = char.charCodeAt(0);
  return code < 0x100 ? `\\x${code.toString(16).padStart(2, "0")}` : `\\u{${code.toString(16)}}`;
}

/** One value as a terminal may show it: every control character escaped. null/undefined show as "-". */
export function escapeText(value: unknown): TerminalText {
  const text = value === null || value === undefined ? "-" : String(value);
  return text.replace(CONTROL, escapeChar) as TerminalText;
}

/** Several lines of text made elsewhere: each line escaped, the line breaks kept. */
export function escapeLines(text: string): TerminalText {
  return text
    .split("\n")
    .map((line) => escapeText(line))
    .join("\n") as TerminalText;
}

/**
 * The CLI's own text with values in it: `t\`locked ${app}: ${reason}\``. The
 * literal parts are the program's; every value is escaped. (Escaping is
 * idempotent for one-line text, so a value that already is TerminalText is
 * unchanged; blocks of several lines are combined with joinLines and indent.)
 */
export function t(strings: TemplateStringsArray, ...values: unknown[]): TerminalText {
  let out = strings[0] ?? "";
  values.forEach((value, i) => {
    out += escapeText(value) + (strings[i + 1] ?? "");
  });
  return out as TerminalText;
}

export function joinLines(lines: readonly TerminalText[], separator = "\n"): TerminalText {
  return lines.join(separator) as TerminalText;
}

/**
 * Columns padded to their widest cell, two spaces apart, no trailing blanks;
 * a header line unless `header` is null. Cells are raw values, escaped here.
 */
export function table(header: readonly string[] | null, rows: readonly (readonly unknown[])[]): TerminalText {
  const all = [...(header ? [header] : []), ...rows].map((row) => row.map((cell) => escapeText(cell)));
  const columns = Math.max(0, ...all.map((row) => row.length));
  const widths = Array.from({ length: columns }, (_, i) =>
    Math.max(...all.map((row) => (row[i] ?? "").length)),
  );
  return all
    .map((row) =>
      row
        .map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i]!)))
        .join("  ")
        .trimEnd(),
    )
    .join("\n") as TerminalText;
}

/** Prefixes every line (indentation of a block). */
export function indent(text: TerminalText, prefix: string): TerminalText {
  return text
    .split("\n")
    .map((line) => `${prefix}${line}`)
    .join("\n") as TerminalText;
}

/** The CLI's own terminal controls (the progress line redraws itself). */
export const CONTROLS = {
  clearLine: "\r\x1b[K" as TerminalText,
  newline: "\n" as TerminalText,
};

const JSON_UNSAFE = /[\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

/**
 * JSON as received, safe for a terminal and still the same JSON value: the
 * controls JSON allows unescaped inside strings (DEL, C1, bidi, separators)
 * become `\u` escapes. (JSON already escapes the C0 ones.)
 */
export function jsonText(json: string): TerminalText {
  return json.replace(
    JSON_UNSAFE,
    (char) => `\\u${char.charCodeAt(0).toString(16).padStart(4, "0")}`,
  ) as TerminalText;
}

// In a deploy log: SGR (colour and style, `ESC [ params m`) is kept; so are
// newline, carriage return (progress bars redraw their line with it) and tab.
// Everything else that would drive the terminal is escaped: OSC (title,
// clipboard, hyperlinks), cursor movement and erasing (CSI other than `m`),
// DCS and the other escape sequences, C0 and C1 controls, bidi controls.
const SGR = /\x1b\[[0-9;:]*m/y;
const LOG_CONTROL =
  /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;
/** An SGR sequence cut off by the end of a chunk (kept to be judged with the next one). */
const SGR_START = /\x1b(?:\[[0-9;:]{0,32})?$/;

/**
 * Filters a deploy log for a terminal, chunk by chunk: a sequence split
 * between two chunks is judged whole (the start of one is held back, at most
 * a few dozen characters, until the next chunk or the end).
 */
export class LogTextFilter {
  private held = "";

  push(chunk: string): TerminalText {
    const text = this.held + chunk;
    const cut = text.search(SGR_START);
    this.held = cut === -1 ? "" : text.slice(cut);
    return filterLog(cut === -1 ? text : text.slice(0, cut));
  }

  end(): TerminalText {
    const rest = this.held;
    this.held = "";
    return filterLog(rest);
  }
}

function filterLog(text: string): TerminalText {
  let out = "";
  let from = 0;
  for (let at = text.indexOf("\x1b"); at !== -1; at = text.indexOf("\x1b", from)) {
    out += text.slice(from, at).replace(LOG_CONTROL, escapeChar);
    SGR.lastIndex = at;
    const sgr = SGR.exec(text);
    if (sgr) {
      out += sgr[0];
      from = at + sgr[0].length;
    } else {
      out += "\\x1b";
      from = at + 1;
    }
  }
  return (out + text.slice(from).replace(LOG_CONTROL, escapeChar)) as TerminalText;
}
