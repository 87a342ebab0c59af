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
 * A promotion of a fleet release: the same artifact when the build does not
 * depend on the environment (no build in the target), a build of the same
 * commits when it does. One real agent serves both environments (same
 * label), so its `current` shows what each really got.
 */
const BUILD = `build_script: |
        mkdir -p dist
        cp VERSION dist/VERSION
        echo "stage=$STAGE" > dist/STAGE
      artifact: dist`;

const manifest = (productionStage: string) => `repo: "{repo}"
environments:
  staging:
    deploy:
      provider: fleet
      hosts: { labels: { role: web } }
      ${BUILD}
      env: { STAGE: shared }
  production:
    promote_from: staging
    deploy:
      provider: fleet
      hosts: { labels: { role: web } }
      strategy: { batch: 1 }
      ${BUILD}
      env: { STAGE: ${productionStage} }
`;

describe("promoting a fleet release", () => {
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

  async function start(yaml: string) {
    t = await startTurnout({ manifest: yaml });
    work = await mkdtemp(path.join(tmpdir(), "turnout-promote-"));
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

  const serves = (file: string) => readFileSync(path.join(agent!.root, "shop", "current", file), "utf8");
  const logOf = async (id: number) => (await t.store.logs.read(id, 0)).chunks.map((c) => c.text).join("");
  async function run(res: { status: number; body: any }) {
    expect(res.status).toBe(202);
    const done = await t.waitForDeploy(res.body.deploy.id, 60_000);
    const log = await logOf(done.id);
    expect(done.status, log).toBe("succeeded");
    return { done, log, release: (await t.store.releases.current("shop", done.env))! };
  }

  it("takes the source's artifact over when the build reads the same, and never the branch's new head", async () => {
    await start(manifest("shared"));
    const staging = await run(await t.api("POST", "/api/v1/apps/shop/environments/staging/deploys", {}));
    expect(staging.log).toContain("==> building");
    await t.repo.commit({ VERSION: "2.0.0\n" }, "not promoted");

    const promoted = await run(
      await t.api("POST", "/api/v1/apps/shop/environments/production/promote", { from: "staging" }),
    );
    expect(promoted.done.artifact).toBe(staging.release.artifact);
    expect(promoted.release.artifact).toBe(staging.release.artifact);
    expect(promoted.log).toContain("(promoted: not built again)");
    expect(promoted.log).not.toContain("==> building");
    expect(serves("VERSION")).toBe("1.0.0\n");
  });

  it("builds the same commits for the target when the build depends on the environment", async () => {
    await start(manifest("production"));
    const staging = await run(await t.api("POST", "/api/v1/apps/shop/environments/staging/deploys", {}));
    await t.repo.commit({ VERSION: "2.0.0\n" }, "not promoted");

    const promoted = await run(
      await t.api("POST", "/api/v1/apps/shop/environments/production/promote", { from: "staging" }),
    );
    expect(promoted.done.artifact).toBeNull();
    expect(promoted.log).toContain("==> building");
    expect(promoted.release.artifact).not.toBe(staging.release.artifact);
    expect(promoted.release.components).toEqual(staging.release.components);
    expect(serves("VERSION")).toBe("1.0.0\n");
    expect(serves("STAGE")).toBe("stage=production\n");
  });
});
