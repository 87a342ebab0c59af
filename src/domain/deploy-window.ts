/**
 * Deploy windows: the hours (in a named IANA time zone) during which an
 * environment takes automatic deploys, and manual ones without `force`.
 *
 * A window is wall-clock time in its zone, on the days it starts: `{days:
 * [mon-fri], from: "09:00", to: "17:00"}` is open from 09:00 to 17:00 local
 * time, whatever the UTC offset that day. `to` may be `24:00` (end of the
 * day), and a `to` earlier than `from` runs past midnight into the next day
 * (`22:00`–`06:00`). Daylight saving time follows from comparing wall clocks:
 * on the day clocks go forward past `from`, the window opens at the first
 * instant whose local time is `from` or later (02:30 in a skipped hour opens
 * at 03:00); when clocks go back, a repeated hour counts each time it is on
 * the wall.
 *
 * Zones are read with Intl (the IANA database Node ships), with no library:
 * the only conversion needed, local wall time to an instant, is done here by
 * asking Intl for the offset and checking the round trip.
 */

export const WEEKDAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"] as const;
export type Weekday = (typeof WEEKDAYS)[number];

export interface WindowRule {
  /** Days the window starts on, 0 = Sunday … 6 = Saturday. */
  days: number[];
  /** Minutes after local midnight the window opens. */
  from: number;
  /** Minutes after local midnight it closes (1440 = the end of the day); below `from`: the next day. */
  to: number;
}

export interface DeployWindows {
  /** IANA zone name, e.g. Europe/Berlin. */
  timezone: string;
  allow: WindowRule[];
}

export type WindowState = { open: true } | { open: false; opensAt: Date | null };

/** What is wrong with a time zone name, or undefined when Intl knows it. */
export function timezoneProblem(zone: string): string | undefined {
  try {
    new Intl.DateTimeFormat("en-US", { timeZone: zone });
    return undefined;
  } catch {
    return `unknown time zone '${zone}' (use an IANA name such as Europe/Berlin or UTC)`;
  }
}

/** "09:00" → 540; "24:00" → 1440 (only as an end); undefined when malformed. */
export function parseClock(text: string, end = false): number | undefined {
  const match = /^([01][0-9]|2[0-4]):([0-5][0-9])$/.exec(text);
  if (!match) return undefined;
  const minutes = Number(match[1]) * 60 + Number(match[2]);
  if (minutes > 1440 || (minutes === 1440 && !end)) return undefined;
  return minutes;
}

/** `mon`, `mon-fri` (ranges may wrap: `fri-mon`), `daily` → weekday numbers; undefined when malformed. */
export function parseDays(items: string[]): number[] | undefined {
  const days = new Set<number>();
  for (const item of items) {
    const text = item.trim().toLowerCase();
    if (text === "daily" || text === "*") {
      for (let d = 0; d < 7; d++) days.add(d);
      continue;
    }
    const [first, last, extra] = text.split("-");
    if (extra !== undefined) return undefined;
    const a = WEEKDAYS.indexOf(first as Weekday);
    const b = last === undefined ? a : WEEKDAYS.indexOf(last as Weekday);
    if (a < 0 || b < 0) return undefined;
    for (let d = a; ; d = (d + 1) % 7) {
      days.add(d);
      if (d === b) break;
    }
  }
  return [...days].sort((x, y) => x - y);
}

/** Whether `now` is inside one of the windows, and if not, when the next one opens (null: never). */
export function windowState(windows: DeployWindows, now: Date): WindowState {
  const local = wallClock(now, windows.timezone);
  const minutes = local.hour * 60 + local.minute;
  const yesterday = (local.weekday + 6) % 7;
  for (const rule of windows.allow) {
    if (rule.to > rule.from) {
      if (rule.days.includes(local.weekday) && minutes >= rule.from && minutes < rule.to)
        return { open: true };
    } else {
      // Past midnight: open from `from` today, or until `to` when it started yesterday.
      if (rule.days.includes(local.weekday) && minutes >= rule.from) return { open: true };
      if (rule.days.includes(yesterday) && minutes < rule.to) return { open: true };
    }
  }
  return { open: false, opensAt: nextOpening(windows, now, local) };
}

function nextOpening(windows: DeployWindows, now: Date, local: WallClock): Date | null {
  let best: Date | null = null;
  // Today and the seven days after: every weekday comes round once more.
  for (let offset = 0; offset <= 7; offset++) {
    const date = addDays(local, offset);
    const weekday = (local.weekday + offset) % 7;
    for (const rule of windows.allow) {
      if (!rule.days.includes(weekday)) continue;
      const at = instantOf(
        { ...date, hour: Math.floor(rule.from / 60), minute: rule.from % 60 },
        windows.timezone,
      );
      if (at.getTime() > now.getTime() && (best === null || at < best)) best = at;
    }
    if (best !== null && offset >= 1) break;
  }
  return best;
}

interface WallClock {
  year: number;
  month: number;
  day: number;
  hour: number;
  minute: number;
  weekday: number;
}

const formatters = new Map<string, Intl.DateTimeFormat>();

function wallClock(at: Date, zone: string): WallClock & { second: number } {
  let format = formatters.get(zone);
  if (!format) {
    format = new Intl.DateTimeFormat("en-US", {
      timeZone: zone,
      hourCycle: "h23",
      year: "numeric",
      month: "numeric",
      day: "numeric",
      hour: "numeric",
      minute: "numeric",
      second: "numeric",
      weekday: "short",
    });
    formatters.set(zone, format);
  }
  const parts: Record<string, string> = {};
  for (const part of format.formatToParts(at)) parts[part.type] = part.value;
  return {
    year: Number(parts["year"]),
    month: Number(parts["month"]),
    day: Number(parts["day"]),
    hour: Number(parts["hour"]) % 24,
    minute: Number(parts["minute"]),
    second: Number(parts["second"]),
    weekday: WEEKDAYS.indexOf(parts["weekday"]!.toLowerCase().slice(0, 3) as Weekday),
  };
}

function addDays(local: WallClock, days: number): Pick<WallClock, "year" | "month" | "day"> {
  const d = new Date(Date.UTC(local.year, local.month - 1, local.day + days));
  return { year: d.getUTCFullYear(), month: d.getUTCMonth() + 1, day: d.getUTCDate() };
}

/** The wall time as if it were UTC, in ms: what offsets are measured against. */
function asUtc(w: Omit<WallClock, "weekday">): number {
  return Date.UTC(w.year, w.month - 1, w.day, w.hour, w.minute);
}

function offsetAt(ms: number, zone: string): number {
  const w = wallClock(new Date(ms), zone);
  return Date.UTC(w.year, w.month - 1, w.day, w.hour, w.minute, w.second) - Math.floor(ms / 1000) * 1000;
}

/**
 * The first instant whose wall clock in `zone` reads `wall` (the earlier one
 * when the hour repeats), or, when that time is skipped by a change to
 * daylight saving time, the first instant after it (the end of the gap).
 */
export function instantOf(wall: Omit<WallClock, "weekday">, zone: string): Date {
  const target = asUtc(wall);
  // The offsets in force around that day: at most one change happens within a day of it.
  const offsets = new Set([offsetAt(target - 86_400_000, zone), offsetAt(target + 86_400_000, zone)]);
  const candidates = [...offsets].map((o) => target - o).sort((a, b) => a - b);
  for (const t of candidates) {
    const w = wallClock(new Date(t), zone);
    if (asUtc(w) === target) return new Date(t);
  }
  // Skipped: the first instant whose wall clock reads later than `wall`.
  let lo = candidates[0]!;
  let hi = candidates[candidates.length - 1]!;
  while (hi - lo > 1000) {
    const mid = lo + Math.floor((hi - lo) / 2);
    if (asUtc(wallClock(new Date(mid), zone)) >= target) hi = mid;
    else lo = mid;
  }
  return new Date(Math.floor(hi / 1000) * 1000);
}

/** "2026-12-07 09:00 Europe/Berlin (08:00 UTC)": a time for messages, in the window's zone. */
export function describeInstant(at: Date, zone: string): string {
  const w = wallClock(at, zone);
  const pad = (n: number) => String(n).padStart(2, "0");
  const local = `${w.year}-${pad(w.month)}-${pad(w.day)} ${pad(w.hour)}:${pad(w.minute)} ${zone}`;
  return zone === "UTC" ? local : `${local} (${at.toISOString().slice(11, 16)} UTC)`;
}
