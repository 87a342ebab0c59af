import { rm } from "node:fs/promises";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { type RunningServer, startServer } from "../../src/server/start-server.js";
import { tempDir } from "../cli/helpers.js";
import { turnout } from "../helpers/built-cli.js";
import { BACKENDS } from "../helpers/databases.js";
import { startTurnout, type TestTurnout } from "../helpers/turnout.js";
import { until } from "../helpers/wait.js";

/**
 * Release pipelines end to end, on both stores: a release deployed to the
 * first stage moves along by itself through its gates (bake, checks,
 * approval), each move a recorded deploy (trigger `pipeline`); a failure or
 * a rejection stops the line and says where. Short durations keep it fast;
 * waits are conditions, never timings.
 */
const shell = (name: string, script = `echo "${name} at $TURNOUT_SHA"`) =>
  `  ${name}:\n    deploy:\n      provider: shell\n      script: ${JSON.stringify(script)}\n`;

function manifest(pipeline: string, qaScript?: string): string {
  return `repo: "{repo}"\npipeline:\n${pipeline}environments:\n${shell("staging")}${shell("qa", qaScript)}${shell("production")}`;
}

const LINE = `  - staging
  - env: qa
    bake: 1s
  - env: production
    approval: { role: admin, timeout: 1h }
`;

describe.each(BACKENDS)("release pipelines (%s)", (backend) => {
  let t: TestTurnout;
  afterEach(async () => {
    await t?.stop();
  });

  const deployStaging = async () => {
    const res = await t.api("POST", "/api/v1/apps/shop/environments/staging/deploys", {});
    expect(res.status).toBe(202);
    return t.waitForDeploy(res.body.deploy.id);
  };
  const pipeline = async () => (await t.api("GET", "/api/v1/apps/shop/pipeline")).body.pipeline;
  const runInto = async (env: string) => {
    const runs = (await pipeline()).runs as { env: string; status: string; waitingOn: string | null }[];
    return runs.find((r) => r.env === env);
  };

  it("moves a release along: bake, then an approval by the named role; each move a recorded deploy", async () => {
    t = await startTurnout({ backend, manifest: manifest(LINE) });
    const staged = await deployStaging();
    expect(staged.status).toBe("succeeded");

    // qa: after the bake, by itself.
    await until(
      async () => (await t.store.deploys.list({ env: "qa", limit: 1 })).length === 1,
      20_000,
      "qa deploy",
    );
    const [qa] = await t.store.deploys.list({ env: "qa", limit: 1 });
    expect(qa).toMatchObject({
      trigger: "pipeline",
      sha: staged.sha,
      promotedFrom: { env: "staging", deployId: staged.id, deployNumber: staged.number },
    });
    expect((await t.waitForDeploy(qa!.id)).status).toBe("succeeded");

    // production: waits for an admin.
    await until(async () => (await runInto("production"))?.waitingOn === "approval", 20_000, "approval wait");
    const view = await pipeline();
    expect(view.stages.map((s: { env: string }) => s.env)).toEqual(["staging", "qa", "production"]);
    expect(view.stages[2].gate.approval).toEqual({ role: "admin", timeoutMs: 3_600_000 });
    expect(view.releases[0].stages.map((s: { state: string }) => s.state)).toEqual([
      "live",
      "live",
      "waiting",
    ]);
    expect(await t.store.deploys.list({ env: "production", limit: 1 })).toEqual([]);

    const deployer = (await t.api("POST", "/api/v1/tokens", { name: "dev", role: "deployer" })).body.token;
    const refused = await t.api(
      "POST",
      "/api/v1/apps/shop/pipeline/approve",
      { stage: "production" },
      deployer,
    );
    expect(refused.status).toBe(403);
    expect(refused.body.error.code).toBe("E_FORBIDDEN");
    const noRun = await t.api("POST", "/api/v1/apps/shop/pipeline/approve", { stage: "qa" });
    expect(noRun.status).toBe(404);

    // The CLI shows where the release is, then approves.
    const home = tempDir("turnout-pipeline-cli-");
    const env = { HOME: home, XDG_CONFIG_HOME: path.join(home, ".config") };
    const auth = ["--server", t.url, "--token", t.adminToken];
    const shown = await turnout(["pipeline", "shop", ...auth], { env, cwd: home });
    expect(shown.code).toBe(0);
    expect(shown.stdout).toContain("approval by admin");
    expect(shown.stdout).toContain("waiting (approval)");
    const approved = await turnout(
      ["pipeline", "approve", "shop", "--stage", "production", "--message", "looks good", ...auth],
      { env, cwd: home },
    );
    expect(approved.code).toBe(0);
    expect(approved.stdout).toContain("approved run");

    await until(
      async () => (await t.store.deploys.list({ env: "production", limit: 1 })).length === 1,
      20_000,
      "production deploy",
    );
    const [production] = await t.store.deploys.list({ env: "production", limit: 1 });
    expect(production).toMatchObject({
      trigger: "pipeline",
      sha: staged.sha,
      promotedFrom: { env: "qa", deployId: qa!.id },
    });
    expect(production!.user).toContain("approved by admin");
    expect((await t.waitForDeploy(production!.id)).status).toBe("succeeded");
    await until(async () => (await runInto("production"))?.status === "done", 20_000, "run done");
    const after = await pipeline();
    expect(after.releases[0].stages.map((s: { state: string }) => s.state)).toEqual(["live", "live", "live"]);
    // Every move is in the history like any deploy.
    const history = await t.api("GET", "/api/v1/apps/shop/environments/production/releases");
    expect(history.body.releases[0].deploy).toMatchObject({
      trigger: "pipeline",
      promotedFrom: { env: "qa" },
    });
    // An answered run cannot be answered again.
    const again = await t.api("POST", "/api/v1/apps/shop/pipeline/reject", { stage: "production" });
    expect(again.status).toBe(404);
  });

  it("a rejection stops the line there; an approval that times out too", async () => {
    t = await startTurnout({
      backend,
      manifest: manifest(`  - staging\n  - env: production\n    approval: { role: deployer, timeout: 1h }\n`),
    });
    await deployStaging();
    await until(async () => (await runInto("production"))?.waitingOn === "approval", 20_000, "approval wait");
    const rejected = await t.api("POST", "/api/v1/apps/shop/pipeline/reject", {
      stage: "production",
      message: "not on a Friday",
    });
    expect(rejected.status).toBe(200);
    expect(rejected.body.run).toMatchObject({ status: "rejected", decidedBy: "admin" });
    expect(rejected.body.run.message).toContain("not on a Friday");
    const runId = rejected.body.run.id;
    const late = await t.api("POST", "/api/v1/apps/shop/pipeline/approve", { run: runId });
    expect(late.status).toBe(409);
    expect(late.body.error.code).toBe("E_CONFLICT");
    await t.engine.tickPipelines();
    expect(await t.store.deploys.list({ env: "production", limit: 1 })).toEqual([]);

    // The same stage with a timeout that runs out: a new release waits, then times out.
    await t.writeManifest(
      "shop",
      manifest(`  - staging\n  - env: production\n    approval: { role: deployer, timeout: 1s }\n`),
    );
    await t.repo.commit({ VERSION: "2\n" }, "second");
    const second = await deployStaging();
    expect(second.status).toBe("succeeded");
    await until(
      async () =>
        (await pipeline()).runs.some(
          (r: { status: string; sourceDeployId: number }) =>
            r.sourceDeployId === second.id && r.status === "timed_out",
        ),
      20_000,
      "timed out",
    );
    const view = await pipeline();
    const timedOut = view.runs.find((r: { sourceDeployId: number }) => r.sourceDeployId === second.id);
    expect(timedOut.message).toContain("nobody approved");
    expect(await t.store.deploys.list({ env: "production", limit: 1 })).toEqual([]);
  });

  it("a failed promotion stops the line and says where; failing checks stop it before the deploy", async () => {
    t = await startTurnout({
      backend,
      manifest: manifest(`  - staging\n  - qa\n  - production\n`, "echo qa broke; exit 4"),
    });
    await deployStaging();
    await until(async () => (await runInto("qa"))?.status === "failed", 20_000, "qa run failed");
    const failed = (await pipeline()).runs.find((r: { env: string }) => r.env === "qa");
    expect(failed.message).toMatch(/shop\/qa#1 failed: the command exited with status 4/);
    await t.engine.tickPipelines();
    expect(await runInto("production")).toBeUndefined();
    expect(await t.store.deploys.list({ env: "production", limit: 1 })).toEqual([]);

    const home = tempDir("turnout-pipeline-cli-");
    const shown = await turnout(["pipeline", "shop", "--server", t.url, "--token", t.adminToken], {
      env: { HOME: home, XDG_CONFIG_HOME: path.join(home, ".config") },
      cwd: home,
    });
    expect(shown.stdout).toContain("shop/qa#1 failed");

    // Checks before production: a check command on the release's checkout.
    await t.writeManifest(
      "shop",
      manifest(
        `  - staging\n  - env: production\n    check_command: [bash, -c, 'test -f "$TURNOUT_WORKSPACE/RELEASE_OK"']\n    checks_poll: 100ms\n`,
      ),
    );
    await t.repo.commit({ VERSION: "3\n" }, "not ok");
    const bad = await deployStaging();
    await until(
      async () =>
        (await pipeline()).runs.some(
          (r: { status: string; sourceDeployId: number }) =>
            r.sourceDeployId === bad.id && r.status === "failed",
        ),
      20_000,
      "checks failed",
    );
    const stopped = (await pipeline()).runs.find(
      (r: { sourceDeployId: number }) => r.sourceDeployId === bad.id,
    );
    expect(stopped.message).toContain("checks before production did not pass");
    expect(await t.store.deploys.list({ env: "production", limit: 1 })).toEqual([]);

    await t.repo.commit({ RELEASE_OK: "yes\n" }, "ok");
    const good = await deployStaging();
    await until(
      async () => (await t.store.deploys.list({ env: "production", limit: 1 })).length === 1,
      20_000,
      "production deploy after checks",
    );
    const [production] = await t.store.deploys.list({ env: "production", limit: 1 });
    expect(production).toMatchObject({ trigger: "pipeline", sha: good.sha });
  });

  it("refuses pipelines that contradict the manifest, naming the field", async () => {
    t = await startTurnout({ backend });
    await t.writeManifest("shop", manifest(`  - staging\n  - nowhere\n`));
    const status = await t.api("GET", "/api/v1/config");
    expect(JSON.stringify(status.body)).toContain("no environment named 'nowhere'");
    await t.writeManifest(
      "shop",
      `repo: "{repo}"\npipeline: [staging, production]\nenvironments:\n${shell("staging")}  production:\n    auto_deploy: true\n    deploy: { provider: shell, script: "true" }\n`,
    );
    const again = await t.api("GET", "/api/v1/config");
    expect(JSON.stringify(again.body)).toContain("environments.production.auto_deploy");
  });
});

describe("release pipelines across a restart", () => {
  it("a run waiting for approval is still there after a restart, and the new server carries it on", async () => {
    const t = await startTurnout({
      manifest: manifest(`  - staging\n  - env: production\n    approval: { role: deployer, timeout: 1h }\n`),
    });
    let second: RunningServer | undefined;
    try {
      const res = await t.api("POST", "/api/v1/apps/shop/environments/staging/deploys", {});
      const staged = await t.waitForDeploy(res.body.deploy.id);
      const waiting = async (url: string) => {
        const view = await fetch(`${url}/api/v1/apps/shop/pipeline`, {
          headers: { authorization: `Bearer ${t.adminToken}` },
        });
        return ((await view.json()) as any).pipeline.runs[0];
      };
      await until(async () => (await waiting(t.url))?.waitingOn === "approval", 20_000, "approval wait");
      const before = await waiting(t.url);
      await t.server.close();

      second = await startServer(t.settings, {
        print: () => undefined,
        configReloadMs: 60_000,
        polling: false,
      });
      const after = await waiting(second.url);
      expect(after).toMatchObject({
        id: before.id,
        status: "waiting",
        approvalDeadline: before.approvalDeadline,
      });
      const approved = await fetch(`${second.url}/api/v1/apps/shop/pipeline/approve`, {
        method: "POST",
        headers: { authorization: `Bearer ${t.adminToken}`, "content-type": "application/json" },
        body: JSON.stringify({ run: before.id }),
      });
      expect(approved.status).toBe(200);
      const store = second.store;
      await until(
        async () => (await store.deploys.list({ env: "production", limit: 1 }))[0]?.status === "succeeded",
        20_000,
        "production deployed by the new server",
      );
      const [production] = await store.deploys.list({ env: "production", limit: 1 });
      expect(production).toMatchObject({
        trigger: "pipeline",
        sha: staged.sha,
        promotedFrom: { env: "staging" },
      });
    } finally {
      await second?.close();
      await rm(path.dirname(t.dataDir), { recursive: true, force: true });
    }
  });
});
