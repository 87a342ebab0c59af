import { describe, expect, it } from "vitest";
import { checkCommitLocks, checkWindow } from "../../src/domain/deploy-guards.js";
import {
  type DeployWindows,
  instantOf,
  parseClock,
  parseDays,
  timezoneProblem,
  windowState,
} from "../../src/domain/deploy-window.js";
import { isTurnoutError } from "../../src/domain/errors.js";

const workdays = (timezone: string, from = "09:00", to = "17:00"): DeployWindows => ({
  timezone,
  allow: [{ days: parseDays(["mon-fri"])!, from: parseClock(from)!, to: parseClock(to, true)! }],
});

const at = (iso: string) => new Date(iso);

describe("deploy windows", () => {
  it("is open inside the hours on the days, closed outside, in the window's zone", () => {
    const berlin = workdays("Europe/Berlin");
    // Monday 2026-12-07: Berlin is UTC+1 in winter.
    expect(windowState(berlin, at("2026-12-07T08:00:00Z"))).toEqual({ open: true });
    expect(windowState(berlin, at("2026-12-07T15:59:00Z"))).toEqual({ open: true });
    expect(windowState(berlin, at("2026-12-07T16:00:00Z"))).toEqual({
      open: false,
      opensAt: at("2026-12-08T08:00:00Z"),
    });
    // Friday evening: the next window is Monday morning.
    expect(windowState(berlin, at("2026-12-11T18:00:00Z"))).toEqual({
      open: false,
      opensAt: at("2026-12-14T08:00:00Z"),
    });
    // Before opening on a workday: later the same day.
    expect(windowState(berlin, at("2026-12-07T06:59:00Z"))).toEqual({
      open: false,
      opensAt: at("2026-12-07T08:00:00Z"),
    });
  });

  it("follows daylight saving time: the same wall-clock hours at another UTC offset", () => {
    const berlin = workdays("Europe/Berlin");
    // Monday 2026-06-01: UTC+2, so 09:00 local is 07:00 UTC.
    expect(windowState(berlin, at("2026-06-01T07:00:00Z"))).toEqual({ open: true });
    expect(windowState(berlin, at("2026-06-01T06:59:00Z")).open).toBe(false);
    // Friday 2026-03-27 evening (UTC+1) → Monday 2026-03-30 09:00, after the switch on Sunday: 07:00 UTC.
    expect(windowState(berlin, at("2026-03-27T20:00:00Z"))).toEqual({
      open: false,
      opensAt: at("2026-03-30T07:00:00Z"),
    });
    // Friday 2026-10-23 (UTC+2) → Monday 2026-10-26 (UTC+1): 08:00 UTC.
    expect(windowState(berlin, at("2026-10-23T20:00:00Z"))).toEqual({
      open: false,
      opensAt: at("2026-10-26T08:00:00Z"),
    });
  });

  it("opens a window starting in a skipped hour when clocks have moved past it, and at the first of a repeated hour", () => {
    const sunday = (from: string, to: string): DeployWindows => ({
      timezone: "Europe/Berlin",
      allow: [{ days: parseDays(["sun"])!, from: parseClock(from)!, to: parseClock(to, true)! }],
    });
    // 2026-03-29 02:00 → 03:00 in Berlin: 02:30 does not exist; the window opens at 03:00 local (01:00 UTC).
    expect(windowState(sunday("02:30", "04:00"), at("2026-03-28T12:00:00Z"))).toEqual({
      open: false,
      opensAt: at("2026-03-29T01:00:00Z"),
    });
    expect(windowState(sunday("02:30", "04:00"), at("2026-03-29T01:00:00Z"))).toEqual({ open: true });
    // 2026-10-25 03:00 → 02:00: 02:30 happens twice; the window opens at the first (00:30 UTC).
    expect(windowState(sunday("02:30", "04:00"), at("2026-10-24T12:00:00Z"))).toEqual({
      open: false,
      opensAt: at("2026-10-25T00:30:00Z"),
    });
    expect(instantOf({ year: 2026, month: 10, day: 25, hour: 2, minute: 30 }, "Europe/Berlin")).toEqual(
      at("2026-10-25T00:30:00Z"),
    );
    // New York, 2026-03-08 02:00 → 03:00.
    expect(instantOf({ year: 2026, month: 3, day: 8, hour: 2, minute: 15 }, "America/New_York")).toEqual(
      at("2026-03-08T07:00:00Z"),
    );
  });

  it("runs a window past midnight when `to` is earlier than `from`", () => {
    const nights: DeployWindows = {
      timezone: "UTC",
      allow: [{ days: parseDays(["fri"])!, from: parseClock("22:00")!, to: parseClock("06:00", true)! }],
    };
    expect(windowState(nights, at("2026-12-11T23:00:00Z"))).toEqual({ open: true }); // Friday night
    expect(windowState(nights, at("2026-12-12T05:59:00Z"))).toEqual({ open: true }); // Saturday morning
    expect(windowState(nights, at("2026-12-12T06:00:00Z"))).toEqual({
      open: false,
      opensAt: at("2026-12-18T22:00:00Z"),
    });
    expect(windowState(nights, at("2026-12-10T23:00:00Z")).open).toBe(false); // Thursday night
  });

  it("parses days, ranges (wrapping too) and times, and refuses the malformed", () => {
    expect(parseDays(["mon-fri"])).toEqual([1, 2, 3, 4, 5]);
    expect(parseDays(["fri-mon"])).toEqual([0, 1, 5, 6]);
    expect(parseDays(["sat", "sun"])).toEqual([0, 6]);
    expect(parseDays(["daily"])).toEqual([0, 1, 2, 3, 4, 5, 6]);
    expect(parseDays(["monday"])).toBeUndefined();
    expect(parseDays(["mon-tue-wed"])).toBeUndefined();
    expect(parseClock("09:00")).toBe(540);
    expect(parseClock("24:00")).toBeUndefined();
    expect(parseClock("24:00", true)).toBe(1440);
    expect(parseClock("9:00")).toBeUndefined();
    expect(parseClock("12:60")).toBeUndefined();
    expect(timezoneProblem("Europe/Berlin")).toBeUndefined();
    expect(timezoneProblem("Mars/Olympus")).toContain("unknown time zone");
  });
});

describe("manual deploy guards", () => {
  const target = { app: "shop", env: "production", windows: workdays("Europe/Berlin") };
  const saturday = at("2026-12-12T12:00:00Z");

  it("refuses a deploy outside the windows with E_OUTSIDE_WINDOW and the next opening", () => {
    let error: unknown;
    try {
      checkWindow(target, saturday, { force: false, reason: undefined });
    } catch (e) {
      error = e;
    }
    expect(isTurnoutError(error) && error.code).toBe("E_OUTSIDE_WINDOW");
    expect((error as Error).message).toContain(
      "the next window opens 2026-12-14 09:00 Europe/Berlin (08:00 UTC)",
    );
    expect(isTurnoutError(error) && error.details).toMatchObject({
      nextWindowAt: "2026-12-14T08:00:00.000Z",
    });
  });

  it("lets a forced deploy through with a reason, and only with one", () => {
    expect(() => checkWindow(target, saturday, { force: true, reason: " " })).toThrow(/needs a reason/);
    expect(checkWindow(target, saturday, { force: true, reason: "hotfix" })).toEqual({
      ignoredSafeties: ["window"],
    });
    expect(checkWindow(target, at("2026-12-14T08:00:00Z"), { force: false, reason: undefined })).toEqual({
      ignoredSafeties: [],
    });
  });

  it("refuses a range holding a locked commit unless forced, naming it", () => {
    const lock = {
      app: "shop",
      sha: "a".repeat(40),
      reason: "bad merge",
      lockedBy: "ops",
      lockedAt: "2026-12-07T00:00:00Z",
      unlockedAt: null,
      unlockedBy: null,
    };
    expect(() => checkCommitLocks(target, [lock], false)).toThrow(/aaaaaaaaaaaa, locked by ops: bad merge/);
    expect(checkCommitLocks(target, [lock], true)).toEqual({ ignoredSafeties: ["commit-lock"] });
    expect(checkCommitLocks(target, [], false)).toEqual({ ignoredSafeties: [] });
  });
});
