import { describe, expect, it } from "vitest";
import {
  checkRunState,
  type GithubCheckRun,
  type GithubStatus,
  reduceChecks,
  statusState,
  summarize,
} from "../../src/checks/check-report.js";
import { nextPage } from "../../src/checks/github-checks.js";

const status = (context: string, state: string, description?: string): GithubStatus => ({
  context,
  state,
  ...(description ? { description } : {}),
});
let ids = 1;
const run = (
  name: string,
  status: string,
  conclusion: string | null,
  startedAt?: string,
  id = ids++,
): GithubCheckRun => ({
  id,
  name,
  status,
  conclusion,
  started_at: startedAt ?? null,
});

describe("reduceChecks", () => {
  it("succeeds when every required check succeeded, from statuses and check runs", () => {
    const report = reduceChecks(
      ["ci/build", "lint"],
      [status("ci/build", "success"), status("other", "failure")],
      [run("lint", "completed", "success")],
    );
    expect(report).toMatchObject({ state: "success", missing: [] });
    expect(report.failed).toBeUndefined();
    expect(report.checks.map((c) => [c.name, c.source, c.state])).toEqual([
      ["ci/build", "status", "success"],
      ["lint", "check_run", "success"],
    ]);
  });

  it("is pending, listing what is missing, while a required check has not reported", () => {
    const report = reduceChecks(["ci/build", "lint"], [status("ci/build", "success")], []);
    expect(report.state).toBe("pending");
    expect(report.missing).toEqual(["lint"]);
    expect(summarize(report)).toBe("pending");
  });

  it("names the first failed check in the order required, not the order GitHub lists them", () => {
    const report = reduceChecks(
      ["a", "b", "c"],
      [status("c", "failure"), status("b", "error"), status("a", "pending")],
      [],
    );
    expect(report.state).toBe("failure");
    expect(report.failed).toBe("b");
    expect(summarize(report)).toBe("failure");
  });

  it("takes the newest status of a context (GitHub lists newest first)", () => {
    expect(reduceChecks(["ci"], [status("ci", "success"), status("ci", "failure")], []).state).toBe(
      "success",
    );
    expect(reduceChecks(["ci"], [status("ci", "failure"), status("ci", "success")], []).state).toBe(
      "failure",
    );
  });

  it("takes the most recent check run of a name by started_at, then by id", () => {
    const older = run("ci", "completed", "failure", "2024-01-01T10:00:00Z", 900);
    const newer = run("ci", "completed", "success", "2024-01-01T11:00:00Z", 100);
    expect(reduceChecks(["ci"], [], [older, newer]).state).toBe("success");
    expect(reduceChecks(["ci"], [], [newer, older]).state).toBe("success");
    const sameTime = "2024-01-01T10:00:00Z";
    const first = run("ci", "completed", "success", sameTime, 1);
    const rerun = run("ci", "in_progress", null, sameTime, 2);
    expect(reduceChecks(["ci"], [], [rerun, first]).state).toBe("pending");
  });

  it("is conservative when a name is both a status and a check run: failure over pending over success", () => {
    const both = (s: string, r: GithubCheckRun) => reduceChecks(["ci"], [status("ci", s)], [r]);
    expect(both("success", run("ci", "completed", "failure")).state).toBe("failure");
    expect(both("failure", run("ci", "completed", "success")).state).toBe("failure");
    expect(both("success", run("ci", "queued", null)).state).toBe("pending");
    expect(both("pending", run("ci", "completed", "success")).state).toBe("pending");
    const ok = both("success", run("ci", "completed", "success"));
    expect(ok.state).toBe("success");
    expect(ok.checks).toHaveLength(1);
    const bad = both("success", run("ci", "completed", "timed_out"));
    expect(bad.checks[0]).toMatchObject({ source: "check_run", state: "failure" });
  });

  it("maps commit-status states and check-run conclusions", () => {
    expect(["success", "pending", "failure", "error", "weird"].map(statusState)).toEqual([
      "success",
      "pending",
      "failure",
      "failure",
      "pending",
    ]);
    const conclusions = [
      "success",
      "neutral",
      "skipped",
      "failure",
      "cancelled",
      "timed_out",
      "action_required",
      "stale",
    ];
    expect(conclusions.map((conclusion) => checkRunState({ status: "completed", conclusion }))).toEqual([
      "success",
      "success",
      "success",
      "failure",
      "failure",
      "failure",
      "failure",
      "failure",
    ]);
    expect(checkRunState({ status: "completed", conclusion: "something_new" })).toBe("failure");
    expect(checkRunState({ status: "queued", conclusion: null })).toBe("pending");
    expect(checkRunState({ status: "in_progress", conclusion: null })).toBe("pending");
  });

  it("counts a name required twice once", () => {
    const report = reduceChecks(["ci", "ci"], [], []);
    expect(report.missing).toEqual(["ci"]);
  });
});

describe("nextPage", () => {
  it("finds rel=next among GitHub's links", () => {
    const link =
      '<https://api.github.com/x?page=1>; rel="prev", <https://api.github.com/x?per_page=100&page=3>; rel="next", <https://api.github.com/x?page=5>; rel="last"';
    expect(nextPage(link)).toBe("https://api.github.com/x?per_page=100&page=3");
    expect(nextPage('<https://api.github.com/x?page=1>; rel="first"')).toBeUndefined();
    expect(nextPage(null)).toBeUndefined();
  });
});
