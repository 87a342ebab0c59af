import { describe, expect, it } from "vitest";
import { environmentStats, type FinishedDeployRow } from "../../src/domain/deploy-stats.js";

const now = new Date("2026-03-10T15:00:00.000Z");
const row = (
  status: FinishedDeployRow["status"],
  startedAt: string,
  finishedAt: string,
): FinishedDeployRow => ({
  status,
  startedAt,
  finishedAt,
});

describe("environment stats", () => {
  it("buckets finished deploys by UTC day over the last days, today included", () => {
    const stats = environmentStats(
      [
        row("succeeded", "2026-03-10T10:00:00.000Z", "2026-03-10T10:01:00.000Z"),
        row("succeeded", "2026-03-10T11:00:00.000Z", "2026-03-10T11:03:00.000Z"),
        row("succeeded", "2026-03-10T12:00:00.000Z", "2026-03-10T12:02:00.000Z"),
        row("cancelled", "2026-03-09T12:00:00.000Z", "2026-03-09T12:00:05.000Z"),
        // Before the first day shown: left out.
        row("failed", "2026-03-01T12:00:00.000Z", "2026-03-03T12:00:00.000Z"),
      ],
      { days: 7, now },
    );
    expect(stats.from).toBe("2026-03-04");
    expect(stats.to).toBe("2026-03-10");
    expect(stats.days.map((d) => d.day)).toEqual([
      "2026-03-04",
      "2026-03-05",
      "2026-03-06",
      "2026-03-07",
      "2026-03-08",
      "2026-03-09",
      "2026-03-10",
    ]);
    expect(stats.days[6]).toEqual({
      day: "2026-03-10",
      succeeded: 3,
      failed: 0,
      cancelled: 0,
      medianDurationMs: 120_000,
    });
    expect(stats.days[5]).toMatchObject({ cancelled: 1, medianDurationMs: null });
    expect(stats.deploys).toBe(4);
    // Cancelled deploys say nothing about the code: 0 failed of 3 decided.
    expect(stats.failureRate).toBe(0);
    expect(stats.medianDurationMs).toBe(120_000);
  });

  it("measures time to restore from the first failure of a run to the next success", () => {
    const stats = environmentStats(
      [
        row("succeeded", "2026-03-08T09:00:00.000Z", "2026-03-08T09:01:00.000Z"),
        row("failed", "2026-03-08T10:00:00.000Z", "2026-03-08T10:00:00.000Z"),
        row("failed", "2026-03-08T10:10:00.000Z", "2026-03-08T10:20:00.000Z"),
        row("succeeded", "2026-03-08T10:25:00.000Z", "2026-03-08T10:30:00.000Z"),
        row("failed", "2026-03-09T10:00:00.000Z", "2026-03-09T10:00:00.000Z"),
        row("succeeded", "2026-03-09T10:50:00.000Z", "2026-03-09T11:00:00.000Z"),
        row("failed", "2026-03-10T08:00:00.000Z", "2026-03-10T08:00:00.000Z"),
      ],
      { days: 30, now },
    );
    // Incidents: 10:00→10:30 (30 min) and 10:00→11:00 (60 min), and one still open.
    expect(stats.restore).toEqual({
      incidents: 3,
      restored: 2,
      meanMs: 45 * 60_000,
      openSince: "2026-03-10T08:00:00.000Z",
    });
    expect(stats.failureRate).toBeCloseTo(4 / 7);
  });

  it("says nothing rather than zero when nothing finished", () => {
    const stats = environmentStats([], { days: 30, now });
    expect(stats.days).toHaveLength(30);
    expect(stats.failureRate).toBeNull();
    expect(stats.medianDurationMs).toBeNull();
    expect(stats.restore).toEqual({ incidents: 0, restored: 0, meanMs: null, openSince: null });
  });
});
