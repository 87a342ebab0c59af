import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { type GateOptions, waitForChecks } from "../../src/checks/gate.js";
import { GithubChecks } from "../../src/checks/github-checks.js";
import type { ChecksConfig, GithubConfig } from "../../src/domain/app-config.js";
import { SecretMasker } from "../../src/domain/secrets.js";
import { type FakeGithub, startFakeGithub } from "../helpers/fake-github.js";
import { until } from "../helpers/wait.js";

const REPO = "acme/shop";
const SHA = "89abcdef0123456789abcdef0123456789abcdef";
const TOKEN = "ghp_gateT0kenNeverPrinted";

let fake: FakeGithub;
let workspace: string;
beforeEach(async () => {
  fake = await startFakeGithub({ token: TOKEN, repos: [REPO] });
  workspace = mkdtempSync(path.join(tmpdir(), "turnout-gate-"));
});
afterEach(async () => {
  await fake.close();
  rmSync(workspace, { recursive: true, force: true });
});

function github(overrides: Partial<GithubConfig> = {}): GithubConfig {
  return { apiUrl: fake.url, repository: REPO, token: TOKEN, ...overrides };
}

function start(config: Partial<ChecksConfig>, overrides: Partial<GateOptions> = {}) {
  const lines: string[] = [];
  const controller = new AbortController();
  const started = Date.now();
  const outcome = waitForChecks({
    config: { required: [], timeoutMs: 5000, pollMs: 20, ...config },
    github: github(),
    sha: SHA,
    workspace,
    env: { PATH: process.env["PATH"] ?? "/usr/bin:/bin" },
    githubChecks: new GithubChecks(),
    masker: new SecretMasker([]),
    signal: controller.signal,
    log: (line) => lines.push(line),
    ...overrides,
  });
  return { outcome, lines, controller, elapsed: () => Date.now() - started };
}

const sh = (script: string) => ["sh", "-c", script];
const looks = () => fake.requests.filter((r) => r.path.includes("/status")).length;
const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe("waitForChecks against GitHub", () => {
  it("passes at once when every required check already succeeded", async () => {
    fake.setStatus(REPO, SHA, "ci/build", "success");
    fake.setCheckRun(REPO, SHA, "lint", "completed", "success");
    const { outcome, lines } = start({ required: ["ci/build", "lint"] });
    const result = await outcome;
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(result.report?.checks.map((c) => c.name)).toEqual(["ci/build", "lint"]);
    expect(looks()).toBe(1);
    expect(lines.at(-1)).toBe("checks: all required checks passed");
  });

  it("waits while checks are missing or pending, narrating changes only, then passes", async () => {
    const { outcome, lines } = start({ required: ["ci/build", "lint"] });
    await until(() => looks() >= 3);
    fake.setStatus(REPO, SHA, "ci/build", "pending", "Build started");
    const seen = looks();
    await until(() => looks() >= seen + 3);
    fake.setStatus(REPO, SHA, "ci/build", "success");
    fake.setCheckRun(REPO, SHA, "lint", "completed", "success");
    const result = await outcome;
    expect(result.ok).toBe(true);
    // One line per change, however many polls saw the same thing.
    expect(lines.filter((l) => l === "check lint: not reported yet")).toHaveLength(1);
    expect(lines.filter((l) => l === "check ci/build: not reported yet")).toHaveLength(1);
    expect(lines.filter((l) => l.startsWith("check ci/build: pending: Build started (https:"))).toHaveLength(
      1,
    );
    expect(lines.filter((l) => l.startsWith("check ci/build: success"))).toHaveLength(1);
    expect(lines[0]).toBe(`checks: waiting for ci/build, lint on ${SHA.slice(0, 12)} (timeout 5s)`);
  });

  it("fails naming the failed check as soon as it fails", async () => {
    fake.setStatus(REPO, SHA, "ci/build", "success");
    const { outcome, elapsed } = start({ required: ["ci/build", "ci/test"], timeoutMs: 10_000 });
    await delay(80);
    fake.setStatus(REPO, SHA, "ci/test", "failure", "3 tests failed");
    const result = await outcome;
    expect(result).toMatchObject({ ok: false, code: "E_CHECKS_FAILED", failed: "ci/test" });
    if (result.ok) return;
    expect(result.message).toMatch(/^check "ci\/test" failed: 3 tests failed \(https:\/\/ci\.example\.com\//);
    expect(elapsed()).toBeLessThan(2000);
  });

  it("times out with E_CHECKS_TIMEOUT, saying what it was waiting for", async () => {
    fake.setCheckRun(REPO, SHA, "build", "in_progress");
    const { outcome, elapsed } = start({ required: ["build", "deploy-ok"], timeoutMs: 150, pollMs: 30 });
    const result = await outcome;
    expect(result).toMatchObject({ ok: false, code: "E_CHECKS_TIMEOUT" });
    if (result.ok) return;
    expect(result.message).toBe("checks did not pass within 150ms: build pending; deploy-ok not reported");
    expect(elapsed()).toBeGreaterThanOrEqual(140);
    expect(elapsed()).toBeLessThan(2000);
  });

  it("is cancelled promptly while sleeping between polls", async () => {
    const { outcome, controller, elapsed } = start({ required: ["ci"], pollMs: 60_000, timeoutMs: 600_000 });
    await until(() => looks() === 1);
    await delay(50);
    controller.abort();
    expect(await outcome).toMatchObject({ ok: false, code: "cancelled" });
    expect(elapsed()).toBeLessThan(1000);
    expect(looks()).toBe(1);
  });

  it("fails the gate on 401 with a clear message and without the token", async () => {
    const { outcome, lines } = start(
      { required: ["ci"] },
      { github: github({ token: "ghp_wrongWrongWrong", tokenEnv: "SHOP_GITHUB_TOKEN" }) },
    );
    const result = await outcome;
    expect(result).toMatchObject({ ok: false, code: "E_CHECKS_FAILED" });
    if (result.ok) return;
    expect(result.message).toBe(
      "checks: GitHub answered 401 (Bad credentials) for acme/shop: check github.repository and the token (SHOP_GITHUB_TOKEN)",
    );
    expect(JSON.stringify({ result, lines })).not.toMatch(/ghp_/);
    expect(looks()).toBe(1);
  });

  it("fails the gate on 404 for a repository GitHub does not know", async () => {
    const result = await start({ required: ["ci"] }, { github: github({ repository: "acme/gone" }) }).outcome;
    expect(result).toMatchObject({ ok: false, code: "E_CHECKS_FAILED" });
    if (result.ok) return;
    expect(result.message).toContain(
      "GitHub answered 404 (Not Found) for acme/gone: check github.repository",
    );
    expect(result.message).not.toContain(TOKEN);
  });

  it("keeps polling through 502s, says so once, and passes when GitHub is back", async () => {
    fake.setStatus(REPO, SHA, "ci", "success");
    fake.failNext(502, 3);
    const { outcome, lines } = start({ required: ["ci"] });
    const result = await outcome;
    expect(result.ok).toBe(true);
    expect(lines.filter((l) => l.includes("GitHub answered 502"))).toHaveLength(1);
    expect(lines).toContain("checks: GitHub answers again");
    expect(looks()).toBeGreaterThanOrEqual(2);
  });

  it("works from a fake clock: sleeps pollMs, never past the deadline", async () => {
    let clock = 1_000_000;
    const sleeps: number[] = [];
    const { outcome } = start(
      { required: ["ci"], timeoutMs: 55_000, pollMs: 10_000 },
      {
        now: () => clock,
        sleep: async (ms) => {
          sleeps.push(ms);
          clock += ms;
        },
      },
    );
    expect(await outcome).toMatchObject({ ok: false, code: "E_CHECKS_TIMEOUT" });
    expect(sleeps).toEqual([10_000, 10_000, 10_000, 10_000, 10_000, 5_000]);
    expect(looks()).toBe(7);
  });
});

describe("waitForChecks with a check_command", () => {
  it("passes when the command exits 0, without asking GitHub", async () => {
    const { outcome } = start({ command: ["check"] }, { commandArgv: sh("echo fine"), github: undefined });
    const result = await outcome;
    expect(result).toEqual({
      ok: true,
      report: {
        state: "success",
        checks: [{ name: "check_command", state: "success", source: "command", description: "exit 0" }],
        missing: [],
      },
    });
    expect(fake.requests).toHaveLength(0);
  });

  it("asks again after exit 75 and passes on a later exit 0", async () => {
    const script =
      'echo run >> runs; [ "$(wc -l < runs)" -ge 3 ] && exit 0; echo "CI still running"; exit 75';
    const { outcome, lines } = start({ command: ["check"] }, { commandArgv: sh(script) });
    const result = await outcome;
    expect(result.ok).toBe(true);
    expect(readFileSync(path.join(workspace, "runs"), "utf8").trim().split("\n")).toHaveLength(3);
    // Output and verdict are narrated when the verdict changes, not on every try.
    expect(lines.filter((l) => l === "check_command| CI still running")).toHaveLength(1);
    expect(lines).toContain("check check_command: pending: exit 75 (not decided yet)");
    expect(lines).toContain("check check_command: success: exit 0");
  });

  it("fails on exit 1, naming the command and logging its output", async () => {
    const { outcome, lines } = start(
      { command: ["check"] },
      { commandArgv: sh("echo 'pipeline red' >&2; exit 1") },
    );
    const result = await outcome;
    expect(result).toEqual({
      ok: false,
      code: "E_CHECKS_FAILED",
      message: "check_command failed: exit 1",
      failed: "check_command",
    });
    expect(lines).toContain("check_command| pipeline red");
  });

  it("is cancelled promptly while the command runs", async () => {
    const { outcome, controller, elapsed } = start({ command: ["check"] }, { commandArgv: ["sleep", "30"] });
    await delay(100);
    controller.abort();
    expect(await outcome).toMatchObject({ ok: false, code: "cancelled" });
    expect(elapsed()).toBeLessThan(3000);
  });

  it("times out a command that keeps saying 'not yet'", async () => {
    const result = await start(
      { command: ["check"], timeoutMs: 200, pollMs: 30 },
      { commandArgv: sh("exit 75") },
    ).outcome;
    expect(result).toMatchObject({ ok: false, code: "E_CHECKS_TIMEOUT" });
    if (result.ok) return;
    expect(result.message).toBe("checks did not pass within 200ms: check_command exit 75 (not decided yet)");
  });

  it("requires both GitHub and the command: waits for GitHub after the command passed", async () => {
    const { outcome, lines } = start(
      { required: ["ci"], command: ["check"] },
      { commandArgv: sh("echo run >> runs") },
    );
    await delay(150);
    expect(lines).toContain("check check_command: success: exit 0");
    fake.setStatus(REPO, SHA, "ci", "success");
    const result = await outcome;
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(result.report?.checks.map((c) => [c.name, c.source])).toEqual([
      ["ci", "status"],
      ["check_command", "command"],
    ]);
    // A command that passed is not run again while GitHub is still pending.
    expect(readFileSync(path.join(workspace, "runs"), "utf8").trim().split("\n")).toHaveLength(1);
  });

  it("requires both GitHub and the command: fails when the command fails though GitHub passed", async () => {
    fake.setStatus(REPO, SHA, "ci", "success");
    const result = await start({ required: ["ci"], command: ["check"] }, { commandArgv: sh("exit 3") })
      .outcome;
    expect(result).toMatchObject({ ok: false, code: "E_CHECKS_FAILED", failed: "check_command" });
  });
});

describe("waitForChecks without anything to wait for", () => {
  it("passes with no report and no requests when nothing is required", async () => {
    const { outcome, lines } = start({});
    expect(await outcome).toEqual({ ok: true, report: null });
    expect(fake.requests).toHaveLength(0);
    expect(lines).toHaveLength(0);
  });

  it("fails when checks are required but no GitHub repository is configured", async () => {
    const result = await start({ required: ["ci"] }, { github: undefined }).outcome;
    expect(result).toMatchObject({ ok: false, code: "E_CHECKS_FAILED" });
  });

  it("refuses a check_command that the caller did not substitute", async () => {
    await expect(start({ command: ["check", "{sha}"] }).outcome).rejects.toMatchObject({
      code: "E_INTERNAL",
    });
  });
});
