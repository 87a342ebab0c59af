import { describe, expect, it } from "vitest";
import {
  environmentsTable,
  formatDuration,
  historyLines,
  outcomeLine,
  problemLine,
  progressLine,
  queuedLine,
  stateText,
  table,
} from "../../src/cli/output.js";
import { deployFixture, envFixture, releaseFixture } from "./fixtures.js";

describe("environment table", () => {
  it("shows current release, state and lock per environment", () => {
    const text = environmentsTable([
      envFixture({
        current: {
          releaseId: 1,
          deployId: 9,
          deployNumber: 3,
          sha: "abcdef0123456789abcdef",
          fingerprint: "f",
          createdAt: "2024-05-01T00:00:00Z",
        },
        active: deployFixture({ number: 4 }),
        queued: 2,
      }),
      envFixture({
        name: "production",
        lock: { app: "shop", env: "production", lockedBy: "bob", reason: "freeze\x1b[31m", createdAt: "x" },
      }),
    ]);
    expect(text.split("\n")).toEqual([
      "APP   ENV         CURRENT          STATE                 LOCK",
      "shop  staging     #3 abcdef012345  running #4, queued 2  -",
      "shop  production  -                idle                  bob: freeze\\x1b[31m",
    ]);
  });

  it("names each state", () => {
    expect(stateText(envFixture())).toBe("idle");
    expect(stateText(envFixture({ queued: 3 }))).toBe("queued 3");
    expect(stateText(envFixture({ active: deployFixture({ status: "waiting", number: 7 }) }))).toBe(
      "waiting #7",
    );
  });

  it("says so when nothing is configured", () => {
    expect(environmentsTable([])).toBe("no apps configured");
  });
});

describe("history", () => {
  it("prints a header, then #N  sha12  ref  fingerprint12  user  trigger  date", () => {
    const lines = historyLines(
      [
        releaseFixture(),
        releaseFixture({
          deployNumber: 12,
          deploy: { number: 12, ref: "v1.2^", user: "bo", trigger: "rollback", finishedAt: null },
        }),
      ],
      false,
    ).split("\n");
    expect(lines).toEqual([
      "DEPLOY  SHA           REF    FINGERPRINT   USER   TRIGGER   DATE",
      "#4      0123456789ab  main   ffffffffffff  alice  cli       2024-05-01 12:00:15Z",
      "#12     0123456789ab  v1.2^  ffffffffffff  bo     rollback  2024-05-01 12:00:15Z",
    ]);
  });

  it("says which component changed for multi-repo apps", () => {
    const line = historyLines(
      [
        releaseFixture({
          components: { core: "1".repeat(40), extensions: "2".repeat(40) },
          changes: [{ component: "extensions", from: "3".repeat(40), to: "2".repeat(40) }],
          configChanged: true,
        }),
      ],
      false,
    );
    expect(line.split("\n")[0]).toMatch(/ {2}DATE +CHANGES$/);
    expect(line).toMatch(/ {2}extensions 3333333→2222222, config$/);
  });

  it("leads with the environment when several are shown", () => {
    const lines = historyLines([releaseFixture({ env: "production" })], true).split("\n");
    expect(lines[0]).toMatch(/^ENV {9}DEPLOY {2}SHA/);
    expect(lines[1]).toMatch(/^production {2}#4 {6}0123456789ab {2}main/);
    expect(historyLines([], true)).toBe("no releases yet");
  });
});

describe("deploy lines", () => {
  it("announces a queued deploy with its id and short sha", () => {
    expect(queuedLine(deployFixture({ status: "queued" }))).toBe(
      "queued shop/staging#4 (id 17) at 0123456789ab",
    );
    expect(queuedLine(deployFixture({ rollbackOf: 2, number: 5, label: "shop/staging#5" }))).toBe(
      "queued rollback to #2 as shop/staging#5 (id 17) at 0123456789ab",
    );
  });

  it("draws the progress line with phase and elapsed time", () => {
    const now = Date.parse("2024-05-01T12:00:13.000Z");
    expect(progressLine(deployFixture(), now)).toBe("shop/staging#4 running (deploy) 12s");
    expect(progressLine(deployFixture({ status: "queued", phase: null, startedAt: null }), now)).toBe(
      "shop/staging#4 queued 13s",
    );
  });

  it("reports how a deploy ended", () => {
    expect(outcomeLine(deployFixture({ status: "succeeded", finishedAt: "2024-05-01T12:00:15.000Z" }))).toBe(
      "shop/staging#4 succeeded in 14s",
    );
    expect(
      outcomeLine(
        deployFixture({ status: "failed", errorCode: "command_failed", errorMessage: "exit status 3" }),
      ),
    ).toBe("shop/staging#4 failed: command_failed: exit status 3");
    expect(outcomeLine(deployFixture({ status: "cancelled" }))).toBe("shop/staging#4 cancelled");
  });

  it("formats durations", () => {
    expect(formatDuration(400)).toBe("0s");
    expect(formatDuration(125_000)).toBe("2m05s");
    expect(formatDuration(3_720_000)).toBe("1h02m");
  });
});

describe("helpers", () => {
  it("pads columns and trims the last", () => {
    expect(table(["A", "B"], [["long", "x "]])).toBe("A     B\nlong  x");
  });

  it("prints config problems as file:line field: message", () => {
    expect(
      problemLine({
        file: "turnout.d/shop.yaml",
        line: 7,
        field: "environments.staging.branch",
        message: "required",
      }),
    ).toBe("turnout.d/shop.yaml:7 environments.staging.branch: required");
    expect(problemLine({ file: "a.yaml", line: null, field: "repo", message: "missing" })).toBe(
      "a.yaml repo: missing",
    );
  });
});
