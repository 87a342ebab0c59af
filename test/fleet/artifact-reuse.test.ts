import { readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { ensureBuilt } from "../helpers/built-cli.js";
import { type AgentProcess, assertConsistent, startAgent, waitForHosts } from "../helpers/fleet.js";
import { startTurnout, type TestTurnout } from "../helpers/turnout.js";

beforeAll(ensureBuilt, 120_000);

/**
 * An artifact is reused across the environments of an app exactly when
 * their builds read the same inputs. One real agent serves every environment
 * here (they select it by the same label), so after each deploy its
 * `current` shows which build the environment really got.
 */
const HOSTS = "hosts: { labels: { role: web } }";

/** A build that writes what it read into the artifact. */
const BUILD_SCRIPT = `build_script: |
        mkdir -p dist
        cp VERSION dist/VERSION
        echo "stage=$STAGE flavor=\${TURNOUT_PARAM_FLAVOR:-none}" > dist/STAGE
      artifact: dist`;

describe("artifact reuse between environments", () => {
  let t: TestTurnout;
  let work: string;
  let agent: AgentProcess | undefined;

  afterEach(async () => {
    await agent?.kill().catch(() => undefined);
    if (agent) await assertConsistent([agent.root]);
    agent = undefined;
    await t?.stop();
    await rm(work, { recursive: true, force: true });
  });

  async function start(manifest: string) {
    t = await startTurnout({ manifest });
    work = await mkdtemp(path.join(tmpdir(), "turnout-reuse-"));
    const token = (
      await t.api("POST", "/api/v1/tokens", { name: "enroll", role: "agent", labels: ["role=web"] })
    ).body.token;
    agent = startAgent({
      serverUrl: t.url,
      token,
      name: "web-1",
      root: path.join(work, "web-1"),
      labels: { role: "web" },
    });
    await waitForHosts(t.api, ["web-1"]);
  }

  /** Deploys the branch head to `env`; returns the finished deploy, its log and what the host serves. */
  async function deploy(env: string, body: Record<string, unknown> = {}) {
    const res = await t.api("POST", `/api/v1/apps/shop/environments/${env}/deploys`, body);
    expect(res.status).toBe(202);
    const done = await t.waitForDeploy(res.body.deploy.id, 60_000);
    const log = (await t.store.logs.read(done.id, 0)).chunks.map((c) => c.text).join("");
    expect(done.status, log).toBe("succeeded");
    const release = await t.store.releases.current("shop", env);
    const serves = (file: string) => readFileSync(path.join(agent!.root, "shop", "current", file), "utf8");
    return { done, log, artifact: release!.artifact!, serves };
  }

  it("environments whose builds read different variables or params get builds of their own", async () => {
    await start(`repo: "{repo}"
environments:
  staging:
    deploy:
      provider: fleet
      ${HOSTS}
      ${BUILD_SCRIPT}
      env: { STAGE: staging }
  production:
    deploy:
      provider: fleet
      ${HOSTS}
      ${BUILD_SCRIPT}
      env: { STAGE: production }
`);
    const staging = await deploy("staging");
    expect(staging.log).toContain("==> building");
    expect(staging.serves("STAGE")).toBe("stage=staging flavor=none\n");

    // Same commit, same configuration revision, other build env: built again.
    const production = await deploy("production");
    expect(production.log).toContain("==> building");
    expect(production.log).not.toContain("reusing artifact");
    expect(production.artifact).not.toBe(staging.artifact);
    expect(production.serves("STAGE")).toBe("stage=production flavor=none\n");

    // Deploy parameters are build variables too.
    const flavoured = await deploy("production", { params: { FLAVOR: "blue" } });
    expect(flavoured.log).toContain("==> building");
    expect(flavoured.serves("STAGE")).toBe("stage=production flavor=blue\n");

    // The same inputs again: the artifact built for them is reused.
    const again = await deploy("production");
    expect(again.log).toContain(`==> reusing artifact ${production.artifact.slice(0, 12)}`);
    expect(again.log).not.toContain("==> building");
    expect(again.serves("STAGE")).toBe("stage=production flavor=none\n");
  });

  it("identical builds are shared whatever the strategy, restart or hosts; a different build command is not", async () => {
    const build = (kind: string) =>
      `build: [sh, -c, 'mkdir -p dist && cp VERSION dist/VERSION && echo ${kind} > dist/KIND']
      artifact: dist`;
    await start(`repo: "{repo}"
environments:
  staging:
    deploy:
      provider: fleet
      ${HOSTS}
      ${build("plain")}
  production:
    deploy:
      provider: fleet
      hosts: { labels: { role: web } }
      ${build("plain")}
      restart: [sh, -c, 'echo restarted']
      strategy: { canary: 1, batch: 1, failure_limit: 0 }
      keep_releases: 3
      timeout: 5m
  preview:
    deploy:
      provider: fleet
      ${HOSTS}
      ${build("fancy")}
`);
    const staging = await deploy("staging");
    expect(staging.log).toContain("==> building");
    expect(staging.serves("KIND")).toBe("plain\n");

    const production = await deploy("production");
    expect(production.log).toContain(`==> reusing artifact ${staging.artifact.slice(0, 12)}`);
    expect(production.log).not.toContain("==> building");
    expect(production.artifact).toBe(staging.artifact);
    expect(production.log).toContain("restarted");

    const preview = await deploy("preview");
    expect(preview.log).toContain("==> building");
    expect(preview.artifact).not.toBe(staging.artifact);
    expect(preview.serves("KIND")).toBe("fancy\n");
  });
});
