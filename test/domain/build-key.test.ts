import { describe, expect, it } from "vitest";
import type { AppConfig } from "../../src/domain/app-config.js";
import {
  type BuildInputs,
  buildEnvironment,
  buildInputsOf,
  buildKey,
  normaliseArtifactPath,
} from "../../src/domain/build-key.js";
import type { Deploy } from "../../src/domain/deploy.js";
import type { FleetDeployConfig } from "../../src/domain/fleet.js";
import { placeholderValues, substitute } from "../../src/domain/placeholders.js";

const SHA = "1111111111111111111111111111111111111111";

const APP: AppConfig = {
  name: "shop",
  repo: "/srv/git/shop",
  auth: {},
  components: [{ name: "app", repo: "/srv/git/shop", auth: {}, hosted: false }],
  pollIntervalMs: 60_000,
  secretEnv: { NPM_TOKEN: "npm-secret" },
  environments: {},
  source: "/etc/turnout/turnout.d/shop.yaml",
};

function fleet(edit: (c: FleetDeployConfig) => void = () => undefined): FleetDeployConfig {
  const config: FleetDeployConfig = {
    provider: "fleet",
    hostLabels: { role: "web" },
    ssh: [],
    build: { command: ["make", "dist"] },
    artifactPath: "dist",
    shared: [],
    restart: ["systemctl", "restart", "shop"],
    strategy: {
      canary: { count: 0 },
      batch: { percent: 100 },
      failureLimit: { count: 0 },
      bakeMs: 0,
      approval: false,
      approvalTimeoutMs: 3_600_000,
      stageConcurrency: 10,
    },
    keepReleases: 5,
    selfHeal: false,
    timeoutMs: 600_000,
    idleTimeoutMs: 300_000,
    env: { NODE_ENV: "production" },
  };
  edit(config);
  return config;
}

function deploy(edit: Partial<Deploy> = {}): Deploy {
  return {
    id: 7,
    app: "shop",
    env: "staging",
    number: 3,
    status: "running",
    phase: null,
    trigger: "auto",
    user: "turnout (poll)",
    ref: "main",
    sha: SHA,
    components: { app: SHA },
    previousSha: null,
    params: {},
    force: false,
    ignoredSafeties: [],
    rollbackOf: null,
    errorCode: null,
    errorMessage: null,
    releaseId: null,
    configRevision: "dir-1",
    appRevision: "app-1",
    createdAt: "2026-01-01T00:00:00.000Z",
    startedAt: null,
    finishedAt: null,
    cancelRequested: false,
    slot: null,
    artifact: null,
    approval: null,
    logPrunedAt: null,
    commit: null,
    commits: null,
    promotedFrom: null,
    reason: null,
    emergency: null,
    ...edit,
  };
}

/** As the fleet provider does it: placeholders substituted first. */
function keyOf(app: AppConfig, d: Deploy, config: FleetDeployConfig): string {
  const values = placeholderValues(d);
  const substituted: FleetDeployConfig = config.build?.command
    ? { ...config, build: { command: substitute(config.build.command, values) } }
    : config;
  return buildKey(buildInputsOf(app, d, substituted));
}

describe("the build key", () => {
  const inputs = buildInputsOf(APP, deploy(), fleet());

  it("changes with every input", () => {
    const base = buildKey(inputs);
    const changes: [string, Partial<BuildInputs>][] = [
      ["app", { app: "blog" }],
      ["primary", { primary: "core" }],
      ["components", { components: { app: "2".repeat(40) } }],
      ["repositories", { repositories: { app: "/srv/git/fork" } }],
      ["command", { command: ["make", "other"] }],
      ["script", { script: "make dist" }],
      ["env", { env: { NODE_ENV: "staging" } }],
      ["secret values", { secretEnv: { NPM_TOKEN: "rotated" } }],
      ["params", { params: { FLAVOR: "b" } }],
      ["artifact path", { artifactPath: "out" }],
      ["exclude", { exclude: ["tmp"] }],
    ];
    for (const [what, change] of changes) expect(buildKey({ ...inputs, ...change }), what).not.toBe(base);
    // Every field of BuildInputs is covered above: a new input needs a line here, and in buildKey.
    expect(changes.map(([, c]) => Object.keys(c)[0]).sort()).toEqual(Object.keys(inputs).sort());
  });

  it("does not depend on the order maps were written in, and never holds a secret", () => {
    const reordered: BuildInputs = {
      ...inputs,
      env: { B: "2", A: "1" },
      secretEnv: { Y: "y-secret", X: "x-secret" },
    };
    const ordered: BuildInputs = {
      ...inputs,
      env: { A: "1", B: "2" },
      secretEnv: { X: "x-secret", Y: "y-secret" },
    };
    expect(buildKey(reordered)).toBe(buildKey(ordered));
    expect(buildKey(ordered)).toMatch(/^[0-9a-f]{64}$/);
  });

  it("is the same for two environments whose builds read the same, whatever else differs", () => {
    const staging = keyOf(APP, deploy(), fleet());
    const production = keyOf(
      APP,
      deploy({
        id: 99,
        env: "production",
        number: 41,
        user: "alice",
        trigger: "cli",
        ref: SHA,
        previousSha: "3".repeat(40),
        configRevision: "dir-2",
        appRevision: "app-2",
      }),
      fleet((c) => {
        c.hostLabels = { role: "web", env: "prod" };
        c.restart = ["systemctl", "reload", "shop"];
        c.health = { http: "http://127.0.0.1/healthz", retries: 3, intervalMs: 1, timeoutMs: 1 };
        c.strategy = { ...c.strategy, canary: { count: 1 }, batch: { percent: 25 }, approval: true };
        c.beforeSwitch = ["./migrate"];
        c.keepReleases = 10;
        c.timeoutMs = 1;
        c.shared = ["log"];
      }),
    );
    expect(production).toBe(staging);
  });

  it("differs when the build reads the environment's name or the deploy's id through a placeholder", () => {
    const withEnv = fleet((c) => (c.build = { command: ["make", "dist", "STAGE={env}"] }));
    expect(keyOf(APP, deploy(), withEnv)).not.toBe(keyOf(APP, deploy({ env: "production" }), withEnv));
    const withDeploy = fleet((c) => (c.build = { command: ["make", "BUILD={deploy}"] }));
    expect(keyOf(APP, deploy(), withDeploy)).not.toBe(keyOf(APP, deploy({ id: 8 }), withDeploy));
  });

  it("with nothing to build, the tree alone: variables are read by nobody", () => {
    const noBuild = fleet((c) => {
      delete c.build;
      c.artifactPath = ".";
    });
    const a = keyOf(APP, deploy(), noBuild);
    const b = keyOf(
      { ...APP, secretEnv: {} },
      deploy({ params: { X: "1" } }),
      fleet((c) => {
        delete c.build;
        c.artifactPath = "./";
        c.env = {};
      }),
    );
    expect(b).toBe(a);
    expect(buildInputsOf(APP, deploy(), noBuild).exclude).toEqual([".git"]);
  });
});

describe("the build's environment", () => {
  it("holds only the server's basics and the inputs: no environment name, deploy id, user or ref", () => {
    const d = deploy({ params: { FLAVOR: "b" } });
    const inputs = buildInputsOf(APP, d, fleet());
    const env = buildEnvironment(inputs, { PATH: "/usr/bin", HOME: "/home/turnout" }, "/data/workspaces/7");
    expect(env).toEqual({
      PATH: "/usr/bin",
      HOME: "/home/turnout",
      NODE_ENV: "production",
      NPM_TOKEN: "npm-secret",
      TURNOUT_APP: "shop",
      TURNOUT_SHA: SHA,
      TURNOUT_SHA_APP: SHA,
      TURNOUT_PARAM_FLAVOR: "b",
      TURNOUT_WORKSPACE: "/data/workspaces/7",
    });
    // What is not an input cannot reach the build.
    const other = buildInputsOf(
      APP,
      deploy({ ...d, id: 8, env: "production", user: "bob", ref: "v1" }),
      fleet(),
    );
    expect(buildEnvironment(other, {}, "/w")).toEqual(buildEnvironment(inputs, {}, "/w"));
  });

  it("normalises the artifact path", () => {
    expect(["dist", "./dist", "dist/", "./dist//"].map(normaliseArtifactPath)).toEqual([
      "dist",
      "dist",
      "dist",
      "dist",
    ]);
    expect(["", ".", "./"].map(normaliseArtifactPath)).toEqual([".", ".", "."]);
  });
});
