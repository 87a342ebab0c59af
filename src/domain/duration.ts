import { TurnoutError } from "./errors.js";

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** "90s", "30m", "1h30m", "500ms" or a plain number of seconds → milliseconds. */
export function parseDuration(value: string | number): number {
  if (typeof value === "number") {
    if (!Number.isFinite(value) || value < 0) throw badDuration(String(value));
    return Math.round(value * 1000);
  }
  const text = value.trim();
  if (/^[0-9]+(\.[0-9]+)?$/.test(text)) return Math.round(Number(text) * 1000);
  const parts = [...text.matchAll(/([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)/g)];
  if (parts.length === 0 || parts.map((p) => p[0]).join("") !== text) throw badDuration(text);
  return Math.round(parts.reduce((sum, p) => sum + Number(p[1]) * UNIT_MS[p[2]!]!, 0));
}

/**
 * The longest delay a timer holds: Node keeps it as a signed 32-bit count of
 * milliseconds (about 24.8 days), and a longer one fires at once, so a
 * `timeout: 600h` would stop a deploy the moment it started.
 */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * A duration something waits for (a timeout, an interval, a grace): parsed
 * as above, and refused unless a timer can hold it and it is at least `minMs`
 * (1 by default: a timeout of 0 ends at once, an interval of 0 spins).
 */
export function parseTimerDuration(value: string | number, minMs = 1): number {
  const ms = parseDuration(value);
  if (ms < minMs || ms > MAX_TIMER_MS) {
    const lower =
      minMs <= 0 ? "" : minMs === 1 ? "more than 0 and " : `at least ${formatDuration(minMs)} and `;
    throw new TurnoutError(
      "E_VALIDATION",
      `invalid duration ${JSON.stringify(value)}: it must be ${lower}at most 596h (about 24 days)`,
    );
  }
  return ms;
}

function badDuration(text: string): TurnoutError {
  return new TurnoutError(
    "E_VALIDATION",
    `invalid duration ${JSON.stringify(text)}: use e.g. 90s, 30m or 1h30m`,
  );
}

export function formatDuration(ms: number): string {
  if (ms < 1000) return `${ms}ms`;
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  return s % 60 === 0 ? `${m}m` : `${m}m${s % 60}s`;
}
