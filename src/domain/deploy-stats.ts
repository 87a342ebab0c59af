/**
 * Per-environment figures over the last days, from finished deploys: how
 * often, how long, how often it failed, and how long it took to get back to
 * a working deploy after a failed one (mean time to restore). Pure: the
 * store reads the rows, this counts.
 */
export interface FinishedDeployRow {
  status: "succeeded" | "failed" | "cancelled";
  startedAt: string | null;
  finishedAt: string;
}

export interface DayStats {
  /** UTC day, YYYY-MM-DD. */
  day: string;
  succeeded: number;
  failed: number;
  cancelled: number;
  /** Median run time of that day's succeeded deploys (null: none). */
  medianDurationMs: number | null;
}

export interface EnvironmentStats {
  /** First and last day shown (UTC, inclusive). */
  from: string;
  to: string;
  days: DayStats[];
  deploys: number;
  succeeded: number;
  failed: number;
  cancelled: number;
  /** failed / (succeeded + failed); cancelled deploys say nothing about the code. Null: nothing finished. */
  failureRate: number | null;
  medianDurationMs: number | null;
  /**
   * Failures and recoveries: an incident starts with a failed deploy after a
   * working one and ends with the next succeeded deploy (several failures in a
   * row are one incident).
   */
  restore: {
    incidents: number;
    restored: number;
    /** Mean time from the first failure to the next success (null: nothing restored). */
    meanMs: number | null;
    /** The environment's newest outcome is a failure: since when. */
    openSince: string | null;
  };
}

const DAY_MS = 86_400_000;

export function dayOf(iso: string): string {
  return iso.slice(0, 10);
}

export function environmentStats(
  rows: readonly FinishedDeployRow[],
  options: { days: number; now: Date },
): EnvironmentStats {
  const today = Date.UTC(options.now.getUTCFullYear(), options.now.getUTCMonth(), options.now.getUTCDate());
  const first = today - (options.days - 1) * DAY_MS;
  const days: DayStats[] = [];
  const byDay = new Map<string, { stats: DayStats; durations: number[] }>();
  for (let t = first; t <= today; t += DAY_MS) {
    const day = new Date(t).toISOString().slice(0, 10);
    const stats: DayStats = { day, succeeded: 0, failed: 0, cancelled: 0, medianDurationMs: null };
    days.push(stats);
    byDay.set(day, { stats, durations: [] });
  }
  const sorted = [...rows].sort((a, b) =>
    a.finishedAt < b.finishedAt ? -1 : a.finishedAt > b.finishedAt ? 1 : 0,
  );
  const allDurations: number[] = [];
  let succeeded = 0;
  let failed = 0;
  let cancelled = 0;
  let openSince: string | null = null;
  const restoreTimes: number[] = [];
  let incidents = 0;
  for (const row of sorted) {
    const bucket = byDay.get(dayOf(row.finishedAt));
    if (!bucket) continue;
    bucket.stats[row.status]++;
    if (row.status === "succeeded") succeeded++;
    else if (row.status === "failed") failed++;
    else cancelled++;
    if (row.status === "succeeded" && row.startedAt) {
      const ms = Date.parse(row.finishedAt) - Date.parse(row.startedAt);
      if (ms >= 0) {
        bucket.durations.push(ms);
        allDurations.push(ms);
      }
    }
    if (row.status === "failed" && openSince === null) {
      openSince = row.finishedAt;
      incidents++;
    } else if (row.status === "succeeded" && openSince !== null) {
      restoreTimes.push(Date.parse(row.finishedAt) - Date.parse(openSince));
      openSince = null;
    }
  }
  for (const { stats, durations } of byDay.values()) stats.medianDurationMs = median(durations);
  const decided = succeeded + failed;
  return {
    from: days[0]!.day,
    to: days[days.length - 1]!.day,
    days,
    deploys: succeeded + failed + cancelled,
    succeeded,
    failed,
    cancelled,
    failureRate: decided === 0 ? null : failed / decided,
    medianDurationMs: median(allDurations),
    restore: {
      incidents,
      restored: restoreTimes.length,
      meanMs:
        restoreTimes.length === 0
          ? null
          : Math.round(restoreTimes.reduce((a, b) => a + b, 0) / restoreTimes.length),
      openSince,
    },
  };
}

export function median(values: readonly number[]): number | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : Math.round((sorted[mid - 1]! + sorted[mid]!) / 2);
}
