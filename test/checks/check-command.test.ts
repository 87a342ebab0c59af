import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { runCheckCommand, runCheckCommandOnce } from "../../src/checks/check-command.js";

let workspace: string;
beforeEach(() => {
  workspace = mkdtempSync(path.join(tmpdir(), "turnout-check-"));
});
afterEach(() => rmSync(workspace, { recursive: true, force: true }));

function run(
  script: string,
  extra: { timeoutMs?: number; signal?: AbortSignal; env?: Record<string, string> } = {},
) {
  let output = "";
  const result = runCheckCommandOnce({
    argv: ["sh", "-c", script],
    cwd: workspace,
    env: { PATH: process.env["PATH"] ?? "/usr/bin:/bin", ...extra.env },
    timeoutMs: extra.timeoutMs ?? 10_000,
    signal: extra.signal ?? new AbortController().signal,
    onOutput: (text) => {
      output += text;
    },
  });
  return result.then((outcome) => ({ ...outcome, output }));
}

describe("runCheckCommand", () => {
  it("passes on exit 0, in the workspace, with the given environment", async () => {
    const result = await run('echo "in $(pwd) for $TURNOUT_SHA"', { env: { TURNOUT_SHA: "abc123" } });
    expect(result).toMatchObject({ state: "success", detail: "exit 0" });
    expect(result.output.trim()).toBe(`in ${workspace} for abc123`);
  });

  it("means 'not decided yet' on exit 75 (EX_TEMPFAIL)", async () => {
    expect(await run("echo waiting; exit 75")).toMatchObject({
      state: "pending",
      detail: "exit 75 (not decided yet)",
    });
  });

  it("fails on any other exit status, and when it cannot start", async () => {
    expect(await run("exit 1")).toMatchObject({ state: "failure", detail: "exit 1" });
    expect(await run("exit 2")).toMatchObject({ state: "failure", detail: "exit 2" });
    expect(await run("kill -KILL $$")).toMatchObject({ state: "failure", detail: "killed by SIGKILL" });
    const missing = await runCheckCommandOnce({
      argv: [path.join(workspace, "no-such-check")],
      cwd: workspace,
      env: {},
      timeoutMs: 5000,
      signal: new AbortController().signal,
      onOutput: () => {},
    });
    expect(missing.state).toBe("failure");
    expect(missing.detail).toContain("could not start");
  });

  it("is undecided (pending) when its time runs out, and the process is stopped", async () => {
    const started = Date.now();
    const result = await run("sleep 30", { timeoutMs: 100 });
    expect(result).toMatchObject({ state: "pending", detail: "timed out" });
    expect(Date.now() - started).toBeLessThan(5000);
  });

  it("stops promptly on abort", async () => {
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 50);
    const started = Date.now();
    const state = await runCheckCommand({
      argv: ["sleep", "30"],
      cwd: workspace,
      env: { PATH: process.env["PATH"] ?? "/usr/bin:/bin" },
      timeoutMs: 60_000,
      signal: controller.signal,
      onOutput: () => {},
    });
    expect(state).toBe("pending");
    expect(Date.now() - started).toBeLessThan(3000);
  });
});
