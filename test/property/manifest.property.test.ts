import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import fc from "fast-check";
import { afterAll, describe, expect, it } from "vitest";
import { stringify } from "yaml";
import { type LoadOptions, type ManifestResult, parseManifest } from "../../src/config/manifest-loader.js";
import type { AppConfig } from "../../src/domain/app-config.js";
import type { FleetDeployConfig } from "../../src/domain/fleet.js";
import { labelProblem } from "../../src/domain/labels.js";
import { substitute } from "../../src/domain/placeholders.js";
import { refProblem } from "../../src/domain/refs.js";
import { remoteKind, remoteUrlProblem } from "../../src/git/remote-url.js";
import { checkHealthUrl, checkHostConfig } from "../../src/providers/fleet/ssh/ssh-validate.js";
import { markers } from "./hostile-input.js";
import { manifestArbitraries } from "./manifest-arbitraries.js";
import { runs } from "./property-runs.js";

/**
 * The manifest loader against generated manifests (a valid skeleton with
 * valid, hostile and wrongly typed values in its fields, and raw text spliced
 * into YAML): it never throws; each problem names the file, a field and, for
 * a field in the file, its line; and what it accepts is what the rest of
 * Turnout can run: repository URLs of the allowed forms, branches that are
 * ref names, commands that stay argv, durations a timer can hold, labels,
 * SSH hosts and health URLs that pass the checks made at deploy time. The
 * loader runs nothing, so the marker directory stays empty.
 */
const markerDir = mkdtempSync(path.join(tmpdir(), "turnout-prop-manifest-"));
afterAll(() => rmSync(markerDir, { recursive: true, force: true }));

const FILE = "/etc/turnout.d/shop.yaml";
const LOAD: LoadOptions = {
  defaultTimeoutMs: 3_600_000,
  defaultIdleTimeoutMs: 1_800_000,
  environment: { SECRET_A: "s3cret", TOKEN: "t0ken", A_1: "x" },
  hostedReposDir: "/var/lib/turnout/hosted",
};
/** The longest delay Node's timers hold; a longer one fires at once (TimeoutOverflowWarning). */
const MAX_TIMER_MS = 2 ** 31 - 1;
/** Problems about the whole file rather than a field of it: these have no line. */
const FILE_LEVEL = new Set(["(file)", "(file name)"]);

const arbitraries = manifestArbitraries(markerDir);

function load(text: string): ManifestResult {
  let result: ManifestResult | undefined;
  expect(() => {
    result = parseManifest(FILE, text, LOAD);
  }).not.toThrow();
  return result!;
}

function expectProblemsWellFormed(result: ManifestResult, text: string): void {
  if ("app" in result) return;
  expect(result.problems.length).toBeGreaterThan(0);
  const lines = text.split("\n").length;
  for (const problem of result.problems) {
    expect(problem.file).toBe(FILE);
    expect(typeof problem.field).toBe("string");
    expect(problem.field.length).toBeGreaterThan(0);
    expect(typeof problem.message).toBe("string");
    expect(problem.message.length).toBeGreaterThan(0);
    if (problem.line !== null) {
      expect(Number.isInteger(problem.line)).toBe(true);
      expect(problem.line).toBeGreaterThanOrEqual(1);
      expect(problem.line).toBeLessThanOrEqual(lines);
    } else if (!FILE_LEVEL.has(problem.field) && !problem.message.endsWith("more problems")) {
      throw new Error(`problem without a line: ${JSON.stringify(problem)}`);
    }
  }
}

/** Every argv command of an accepted app, with the input it came from. */
function commandsOf(app: AppConfig): string[][] {
  const out: string[][] = [];
  for (const env of Object.values(app.environments)) {
    if (env.checks?.command) out.push(env.checks.command);
    const d = env.deploy;
    if (d.provider === "shell") {
      if (d.command) out.push(d.command);
    } else if (d.provider === "fleet") {
      for (const c of [d.build?.command, d.beforeSwitch, d.restart, d.depool, d.pool, d.health?.command]) {
        if (c) out.push(c);
      }
    }
  }
  return out;
}

function inputCommandsOf(input: Record<string, unknown>): unknown[] {
  const out: unknown[] = [];
  for (const env of Object.values(input["environments"] as Record<string, any>)) {
    if (env.check_command !== undefined) out.push(env.check_command);
    const d = env.deploy;
    for (const key of ["command", "build", "before_switch", "restart", "depool", "pool"]) {
      if (d?.[key] !== undefined) out.push(d[key]);
    }
    if (d?.health?.command !== undefined) out.push(d.health.command);
  }
  return out;
}

function durationsOf(app: AppConfig): { name: string; ms: number; positive: boolean }[] {
  const out = [{ name: "poll_interval", ms: app.pollIntervalMs, positive: true }];
  for (const env of Object.values(app.environments)) {
    const d = env.deploy;
    out.push({ name: "timeout", ms: d.timeoutMs, positive: true });
    out.push({ name: "idle_timeout", ms: d.idleTimeoutMs, positive: true });
    if (env.checks) {
      out.push({ name: "checks_timeout", ms: env.checks.timeoutMs, positive: true });
      out.push({ name: "checks_poll", ms: env.checks.pollMs, positive: true });
    }
    if (d.provider === "fleet") {
      const f = d as FleetDeployConfig;
      out.push({ name: "bake", ms: f.strategy.bakeMs, positive: false });
      out.push({ name: "approval_timeout", ms: f.strategy.approvalTimeoutMs, positive: true });
      if (f.health) {
        out.push({ name: "health.interval", ms: f.health.intervalMs, positive: false });
        out.push({ name: "health.timeout", ms: f.health.timeoutMs, positive: true });
      }
    }
  }
  return out;
}

function expectRunnable(app: AppConfig, input: Record<string, unknown>): void {
  for (const component of app.components) {
    if (component.hosted) continue;
    expect(remoteUrlProblem(component.repo)).toBeUndefined();
    expect(["http", "ssh", "git", "file", "local"]).toContain(remoteKind(component.repo));
    expect(component.repo.startsWith("-")).toBe(false);
    // `<name>::…` runs git's transport helper git-remote-<name>.
    expect(component.repo).not.toMatch(/^[a-z][a-z0-9+.-]*::/i);
  }
  for (const env of Object.values(app.environments)) {
    for (const branch of Object.values(env.branches)) expect(refProblem(branch)).toBeUndefined();
    const d = env.deploy;
    if (d.provider === "fleet") {
      for (const [key, value] of Object.entries(d.hostLabels ?? {}))
        expect(labelProblem(key, value)).toBeUndefined();
      for (const host of d.ssh) {
        expect(() => checkHostConfig(host)).not.toThrow();
        for (const [key, value] of Object.entries(host.labels))
          expect(labelProblem(key, value)).toBeUndefined();
      }
      if (d.health?.http !== undefined) expect(() => checkHealthUrl(d.health!.http!)).not.toThrow();
    }
  }
  // Commands are kept as the argv they were written as: nothing split, joined or expanded at load.
  expect(commandsOf(app)).toEqual(inputCommandsOf(input));
  for (const { name, ms, positive } of durationsOf(app)) {
    expect(Number.isInteger(ms), name).toBe(true);
    expect(ms, name).toBeLessThanOrEqual(MAX_TIMER_MS);
    expect(ms, name).toBeGreaterThanOrEqual(positive ? 1 : 0);
  }
}

describe("manifests (property)", () => {
  it("generated manifests: never a throw, problems with file, field and line, accepted ones runnable", () => {
    let accepted = 0;
    fc.assert(
      fc.property(arbitraries.manifest, (input) => {
        const text = stringify(input);
        const result = load(text);
        expectProblemsWellFormed(result, text);
        if ("app" in result) {
          accepted += 1;
          expectRunnable(result.app, input);
        }
      }),
      runs(300),
    );
    // The generator must reach the accepting side too, or the "runnable" half proves nothing.
    expect(accepted).toBeGreaterThan(5);
    expect(markers(markerDir)).toEqual([]);
  });

  it("raw text spliced into a manifest: never a throw, problems with file, field and line", () => {
    fc.assert(
      fc.property(arbitraries.spliced, (text) => {
        const result = load(text);
        expectProblemsWellFormed(result, text);
        if ("app" in result) {
          for (const component of result.app.components)
            expect(remoteUrlProblem(component.repo)).toBeUndefined();
          for (const env of Object.values(result.app.environments)) {
            for (const branch of Object.values(env.branches)) expect(refProblem(branch)).toBeUndefined();
          }
        }
      }),
      runs(300),
    );
    expect(markers(markerDir)).toEqual([]);
  });

  it("accepted commands stay argv: substituting any valid values keeps one argument per element", () => {
    const value = fc.stringMatching(/^[A-Za-z0-9._/+=@#~^][A-Za-z0-9._/+=@#~^-]{0,20}$/);
    fc.assert(
      fc.property(arbitraries.argv, fc.tuple(value, value, value, value), (argv, [app, env, sha, ref]) => {
        fc.pre(argv.length > 0 && argv.every((a) => a.length > 0));
        const values = { app, env, sha, ref, previous_sha: "", deploy: "7" };
        let out: string[] = [];
        try {
          out = substitute(argv, values);
        } catch (error) {
          expect((error as { code?: string }).code).toBe("E_VALIDATION");
          return;
        }
        expect(out.length).toBe(argv.length);
        argv.forEach((arg, i) => {
          if (!arg.includes("{")) expect(out[i]).toBe(arg);
        });
      }),
      { ...runs(200), maxSkipsPerRun: 100 },
    );
  });
});
