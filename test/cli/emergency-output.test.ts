import { describe, expect, it } from "vitest";
import { hostHistoryTable } from "../../src/cli/commands/host-history.js";
import { currentText, emergencyText, historyLines } from "../../src/cli/output.js";
import type { HostHistoryEntry } from "../../src/domain/dashboard.js";
import { envFixture, releaseFixture } from "./fixtures.js";

const SHA = "0123456789abcdef0123456789abcdef01234567";
const URGENT = { base: SHA, files: ["VERSION", "app.js"], reason: "INC-7", by: "alice", deployNumber: 5 };

describe("the unreviewed mark", () => {
  it("says who, which deploy, the base, how many files and why", () => {
    expect(emergencyText(URGENT)).toBe(
      "emergency #5 by alice; base 0123456789ab; 2 files changed; reason: INC-7",
    );
    expect(emergencyText({ base: null, files: [], reason: "x" })).toBe(
      "emergency; no base commit; 0 files changed; reason: x",
    );
  });

  it("marks the current release and adds an UNREVIEWED column only when a release in view needs it", () => {
    const current = { releaseId: 1, deployId: 1, deployNumber: 5, sha: SHA, fingerprint: SHA, createdAt: "" };
    expect(currentText(envFixture({ current, unreviewed: URGENT }))).toBe("#5 0123456789ab UNREVIEWED");
    expect(currentText(envFixture({ current, unreviewed: null }))).toBe("#5 0123456789ab");
    expect(historyLines([releaseFixture()], false)).not.toContain("UNREVIEWED");
    const lines = historyLines(
      [releaseFixture({ deployNumber: 5, emergency: URGENT }), releaseFixture({ deployNumber: 4 })],
      false,
    ).split("\n");
    expect(lines[0]).toMatch(/UNREVIEWED$/);
    expect(lines[1]).toContain("reason: INC-7");
    expect(lines[2]).toMatch(/ -$/);
  });
});

describe("hostHistoryTable", () => {
  const entry = (over: Partial<HostHistoryEntry>): HostHistoryEntry => ({
    deployId: 1,
    app: "shop",
    env: "production",
    number: 1,
    status: "succeeded",
    trigger: "cli",
    user: "alice",
    sha: SHA,
    commit: null,
    releaseId: "aaaaaaaaaaaaaaaa",
    previousRelease: null,
    step: "healthy",
    switched: true,
    switchedAt: "2026-05-04T10:08:55.000Z",
    rollbackOf: null,
    selfHeal: false,
    error: null,
    startedAt: null,
    finishedAt: null,
    updatedAt: "2026-05-04T10:09:00.000Z",
    ...over,
  });

  it("names each kind of deploy and says when the host did not switch", () => {
    const lines = hostHistoryTable([
      entry({ number: 4, trigger: "reconcile", selfHeal: true, switched: false, switchedAt: null }),
      entry({ number: 3, trigger: "rollback", rollbackOf: 1 }),
      entry({ number: 2, trigger: "reconcile" }),
      entry({ number: 1 }),
    ]).split("\n");
    expect(lines[1]).toMatch(
      /^\(2026-05-04 10:09:00Z\)\s+shop\/production#4\s+self-heal\s.*healthy \(not switched\)/,
    );
    expect(lines[2]).toMatch(/^2026-05-04 10:08:55Z\s+shop\/production#3\s+rollback to #1\s/);
    expect(lines[3]).toMatch(/#2\s+reconcile\s/);
    expect(lines[4]).toMatch(/#1\s+deploy\s+aaaaaaaaaaaaaaaa\s+-\s+healthy\s+0123456789ab\s+alice$/);
    expect(hostHistoryTable([])).toBe("no fleet deploy reached this host");
  });
});
