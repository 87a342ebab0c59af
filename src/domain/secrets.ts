/**
 * Masking of known secret values in output. The rule every output path
 * follows: output is masked as a stream, before anything cuts, truncates,
 * prefixes or stores it. A secret split between two reads of a pipe, two
 * messages of a host, or two pieces of an over-long line is still one run
 * of characters in the stream, so it is still found; a cut made after
 * masking can only split a mask, never a secret.
 *
 * What is hidden: every character that belongs to an occurrence of a
 * secret. Occurrences that overlap or touch (a secret that overlaps itself,
 * like `abab` in `ababab`, or two secrets side by side) become one mask, so
 * no part of a secret survives whichever occurrence "wins".
 *
 * Values shorter than four characters (after trimming the whitespace around
 * them) are not masked: they would blank out ordinary text and are not
 * secrets worth the name. The surrounding whitespace is not part of the
 * secret either, so a key file's trailing newline still ends its line.
 */
export const MASK = "********";
const MIN_SECRET_LENGTH = 4;

export class SecretMasker {
  /** The values masked, longest first. */
  readonly values: readonly string[];
  /** Length of the longest value: a stream holds back at most one less than this. */
  readonly longest: number;
  private readonly firstChars: ReadonlySet<string>;

  constructor(secrets: Iterable<string>) {
    const values = new Set<string>();
    for (const secret of secrets) {
      const value = secret.trim();
      if (value.length >= MIN_SECRET_LENGTH) values.add(value);
    }
    this.values = [...values].sort((a, b) => b.length - a.length);
    this.longest = this.values[0]?.length ?? 0;
    this.firstChars = new Set(this.values.map((v) => v[0]!));
  }

  /** Masks a complete text (nothing more of it will come). */
  mask(text: string): string {
    if (this.values.length === 0) return text;
    return maskRun(this, text, { covered: 0, open: false }, true).out;
  }

  /** A stream that masks text arriving in pieces (see MaskingStream). */
  stream(): MaskingStream {
    return new MaskingStream(this);
  }

  with(more: Iterable<string>): SecretMasker {
    return new SecretMasker([...this.values, ...more]);
  }

  /** Whether `text` starting at `at` could be the beginning of a secret not yet complete. */
  couldStartAt(text: string, at: number): boolean {
    if (!this.firstChars.has(text[at]!)) return false;
    const rest = text.length - at;
    for (const value of this.values) {
      if (value.length <= rest) continue;
      let i = 0;
      while (i < rest && text.charCodeAt(at + i) === value.charCodeAt(i)) i++;
      if (i === rest) return true;
    }
    return false;
  }
}

/**
 * Masks text that arrives in pieces. `push` returns what may be shown now;
 * it holds back only a tail that could be the start of a secret (at most
 * the longest secret's length minus one), so live output stays live. `end`
 * returns the rest. Whatever the pieces, the concatenated result is the
 * same as masking the whole text at once.
 */
export class MaskingStream {
  private held = "";
  private readonly state: StreamState = { covered: 0, open: false };

  constructor(private masker: SecretMasker) {}

  /** Masks with a larger set of secrets from now on (one learnt mid-deploy), keeping what is held. */
  use(masker: SecretMasker): void {
    this.masker = masker;
  }

  /** How many characters are held back, waiting to see whether they start a secret. */
  get holding(): number {
    return this.held.length;
  }

  push(text: string): string {
    if (text.length === 0) return "";
    return this.run(this.held + text, false);
  }

  end(): string {
    const out = this.held.length > 0 ? this.run(this.held, true) : "";
    this.held = "";
    this.state.covered = 0;
    this.state.open = false;
    return out;
  }

  private run(buffer: string, final: boolean): string {
    if (this.masker.values.length === 0 && this.state.covered === 0) {
      this.held = "";
      this.state.open = false;
      return buffer;
    }
    const { out, boundary } = maskRun(this.masker, buffer, this.state, final);
    this.held = buffer.slice(boundary);
    return out;
  }
}

interface StreamState {
  /** Leading characters of the held text that belong to a mask already shown. */
  covered: number;
  /** The text shown so far ends with a mask that reached the held text: an occurrence there continues it. */
  open: boolean;
}

/**
 * One round over `buffer` (held text + new text): shows everything before
 * the boundary, masked, and updates `state` for the held rest. An
 * occurrence that started before the boundary and runs past the end of the
 * buffer cannot exist (the boundary is the first place where the remaining
 * text could still grow into a secret), so every character shown is judged
 * with every occurrence that covers it.
 */
function maskRun(
  masker: SecretMasker,
  buffer: string,
  state: StreamState,
  final: boolean,
): { out: string; boundary: number } {
  const intervals: [number, number][] = state.covered > 0 ? [[0, state.covered]] : [];
  for (const value of masker.values) {
    for (let at = buffer.indexOf(value); at !== -1; at = buffer.indexOf(value, at + 1)) {
      intervals.push([at, at + value.length]);
    }
  }
  intervals.sort((a, b) => a[0] - b[0]);

  const boundary = final ? buffer.length : holdFrom(masker, buffer);
  let out = "";
  let pos = 0;
  let i = 0;
  let lastEnd = -1;
  // An occurrence at 0 that continues a mask already shown counts as started, wherever the boundary is.
  const started = (start: number) => start < boundary || (start === 0 && state.open);
  while (i < intervals.length && started(intervals[i]![0])) {
    let [start, end] = intervals[i]!;
    i++;
    // Overlapping or touching occurrences are one mask.
    while (i < intervals.length && intervals[i]![0] <= end) {
      end = Math.max(end, intervals[i]![1]);
      i++;
    }
    out += buffer.slice(pos, start);
    if (!(start === 0 && state.open)) out += MASK;
    pos = end;
    lastEnd = end;
  }
  if (pos < boundary) out += buffer.slice(pos, boundary);
  if (final) {
    state.covered = 0;
    state.open = false;
  } else if (lastEnd >= 0) {
    state.covered = Math.max(0, lastEnd - boundary);
    state.open = lastEnd >= boundary;
  } else if (boundary > 0) {
    state.covered = 0;
    state.open = false;
  }
  // Otherwise nothing was shown and nothing is covered: the state stays as it was.
  return { out, boundary };
}

/** The first position whose remaining text could still grow into a secret (the buffer's length if none). */
function holdFrom(masker: SecretMasker, buffer: string): number {
  const first = Math.max(0, buffer.length - (masker.longest - 1));
  for (let at = first; at < buffer.length; at++) {
    if (masker.couldStartAt(buffer, at)) {
      // Never between the halves of a surrogate pair.
      const code = buffer.charCodeAt(at - 1);
      return at > 0 && code >= 0xd800 && code <= 0xdbff ? at - 1 : at;
    }
  }
  return buffer.length;
}
