import { describe, expect, it } from "vitest";
import type { AppConfig, EnvironmentConfig } from "../../src/domain/app-config.js";
import type { Deploy } from "../../src/domain/deploy.js";
import { isTurnoutError } from "../../src/domain/errors.js";
import type { FleetDeployConfig } from "../../src/domain/fleet.js";
import { checkDirectDeploy, checkPromotionSource, reusableArtifact } from "../../src/domain/promotion.js";
import { type PipelineRun, releasePositions } from "../../src/domain/release-pipeline.js";
import type { Principal } from "../../src/domain/roles.js";

const SHA = "1111111111111111111111111111111111111111";
const DIGEST = "a".repeat(64);
const APP: AppConfig = {
  name: "shop",
  repo: "/srv/git/shop",
  auth: {},
  components: [{ name: "app", repo: "/srv/git/shop", auth: {}, hosted: false }],
  pollIntervalMs: 60_000,
  secretEnv: {},
  environments: {},
  source: "shop.yaml",
};

function fleetEnv(name: string, edit: (c: FleetDeployConfig) => void = () => undefined): EnvironmentConfig {
  const deploy: FleetDeployConfig = {
    provider: "fleet",
    hostLabels: { role: "web", env: name },
    ssh: [],
    build: { command: ["make", "dist"] },
    artifactPath: "dist",
    shared: [],
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
  edit(deploy);
  return { name, branch: "main", branches: { app: "main" }, autoDeploy: false, selfHeal: false, deploy };
}

const sourceDeploy = { id: 7, params: {}, sha: SHA, ref: "main", previousSha: null } as Pick<
  Deploy,
  "id" | "params" | "sha" | "ref" | "previousSha"
>;
const release = (environmentConfig: EnvironmentConfig) => ({
  artifact: DIGEST,
  environmentConfig,
  env: "staging",
  components: { app: SHA },
});

describe("reusableArtifact: the source's artifact goes along only when the build does not depend on the environment", () => {
  it("reuses it when both builds read the same (hosts and strategy differ, which the build does not read)", () => {
    const target = fleetEnv("production", (c) => {
      c.strategy.canary = { count: 1 };
    });
    expect(reusableArtifact(APP, release(fleetEnv("staging")), sourceDeploy, target)).toBe(DIGEST);
  });

  it("builds again when the build's variables differ", () => {
    const target = fleetEnv("production", (c) => {
      c.env = { NODE_ENV: "production", API: "https://prod" };
    });
    expect(reusableArtifact(APP, release(fleetEnv("staging")), sourceDeploy, target)).toBeNull();
  });

  it("builds again when the build command names the environment or the deploy", () => {
    const withEnv = (c: FleetDeployConfig) => {
      c.build = { command: ["make", "dist", "ENV={env}"] };
    };
    expect(
      reusableArtifact(
        APP,
        release(fleetEnv("staging", withEnv)),
        sourceDeploy,
        fleetEnv("production", withEnv),
      ),
    ).toBeNull();
    const withDeploy = (c: FleetDeployConfig) => {
      c.build = { command: ["make", "dist", "ID={deploy}"] };
    };
    expect(
      reusableArtifact(
        APP,
        release(fleetEnv("staging", withDeploy)),
        sourceDeploy,
        fleetEnv("production", withDeploy),
      ),
    ).toBeNull();
  });

  it("has nothing to take over from a release without an artifact, or into a shell environment", () => {
    expect(
      reusableArtifact(APP, { ...release(fleetEnv("staging")), artifact: null }, sourceDeploy, fleetEnv("p")),
    ).toBeNull();
    const shell: EnvironmentConfig = {
      ...fleetEnv("production"),
      deploy: { provider: "shell", script: "true", timeoutMs: 1, idleTimeoutMs: 1, env: {} },
    };
    expect(reusableArtifact(APP, release(fleetEnv("staging")), sourceDeploy, shell)).toBeNull();
  });
});

describe("promote_from rules", () => {
  const production = { ...fleetEnv("production"), promoteFrom: { env: "staging", minLiveMs: 60_000 } };
  const admin: Principal = { tokenId: 1, name: "root", role: "admin", apps: null };
  const deployer: Principal = { tokenId: 2, name: "dev", role: "deployer", apps: null };
  const codeOf = (f: () => unknown) => {
    try {
      f();
      return "ok";
    } catch (error) {
      return isTurnoutError(error) ? error.code : String(error);
    }
  };

  it("takes a direct deploy only from an admin with a reason", () => {
    expect(codeOf(() => checkDirectDeploy("shop", production, admin, undefined))).toBe(
      "E_PROMOTION_REQUIRED",
    );
    expect(codeOf(() => checkDirectDeploy("shop", production, admin, "  "))).toBe("E_PROMOTION_REQUIRED");
    expect(codeOf(() => checkDirectDeploy("shop", production, deployer, "hotfix"))).toBe(
      "E_PROMOTION_REQUIRED",
    );
    expect(checkDirectDeploy("shop", production, admin, "hotfix")).toEqual({
      ignoredSafeties: ["promotion"],
    });
    expect(checkDirectDeploy("shop", fleetEnv("qa"), deployer, undefined)).toEqual({ ignoredSafeties: [] });
  });

  it("takes promotions from the named environment once live there long enough", () => {
    const now = Date.parse("2026-01-01T00:10:00Z");
    const source = (at: string) => ({ createdAt: at, deployNumber: 3 });
    expect(
      codeOf(() => checkPromotionSource("shop", "qa", production, source("2026-01-01T00:00:00Z"), now)),
    ).toBe("E_PROMOTION_REQUIRED");
    expect(
      codeOf(() => checkPromotionSource("shop", "staging", production, source("2026-01-01T00:09:30Z"), now)),
    ).toBe("E_PROMOTION_TOO_EARLY");
    expect(
      codeOf(() => checkPromotionSource("shop", "staging", production, source("2026-01-01T00:09:00Z"), now)),
    ).toBe("ok");
  });
});

describe("releasePositions", () => {
  it("shows each release live where its components are live, else its newest run's state", () => {
    const pipeline = {
      stages: [
        { env: "staging", gate: null },
        { env: "production", gate: { bakeMs: 0 } },
      ],
    };
    const run = {
      id: 1,
      env: "production",
      components: { app: "b" },
      sha: "b",
      status: "waiting",
      waitingOn: "approval",
    } as unknown as PipelineRun;
    const positions = releasePositions(pipeline, { staging: { app: "b" }, production: { app: "a" } }, [run]);
    expect(positions.map((p) => [p.sha, p.stages.map((s) => s.state)])).toEqual([
      ["b", ["live", "waiting"]],
      ["a", [null, "live"]],
    ]);
  });
});
