import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { tempDir } from "../cli/helpers.js";
import { turnout } from "../helpers/built-cli.js";
import { BACKENDS } from "../helpers/databases.js";
import { startTurnout, type TestTurnout } from "../helpers/turnout.js";

/**
 * Promotion end to end through the API and the built CLI, on both stores:
 * the target gets exactly the release the source runs (not the branch head),
 * the deploy records where it came from, and an environment that requires
 * promotion refuses direct deploys unless an admin gives a reason.
 */
const MANIFEST = `repo: "{repo}"
environments:
  staging:
    deploy:
      provider: shell
      script: echo "staging at $TURNOUT_SHA"
  qa:
    deploy:
      provider: shell
      script: echo "qa at $TURNOUT_SHA"
  production:
    promote_from: staging
    deploy:
      provider: shell
      script: echo "production at $TURNOUT_SHA"
`;

describe.each(BACKENDS)("promotion (%s)", (backend) => {
  let t: TestTurnout;
  beforeEach(async () => {
    t = await startTurnout({ backend, manifest: MANIFEST });
  });
  afterEach(async () => {
    await t?.stop();
  });

  const deployTo = async (env: string, body: Record<string, unknown> = {}, token?: string) =>
    t.api("POST", `/api/v1/apps/shop/environments/${env}/deploys`, body, token);
  const logOf = async (id: number) => (await t.store.logs.read(id, 0)).chunks.map((c) => c.text).join("");

  it("deploys to the target exactly the release the source runs, and records where it came from", async () => {
    const first = t.repo.head;
    const staged = await t.waitForDeploy((await deployTo("staging")).body.deploy.id);
    expect(staged.status).toBe("succeeded");
    // The branch moves on: a promotion still ships what staging runs, not the head.
    const second = await t.repo.commit({ VERSION: "2.0.0\n" }, "second");
    expect(second).not.toBe(first);

    const res = await t.api("POST", "/api/v1/apps/shop/environments/production/promote", { from: "staging" });
    expect(res.status).toBe(202);
    expect(res.headers.get("location")).toBe(`/api/v1/deploys/${res.body.deploy.id}`);
    expect(res.body.deploy).toMatchObject({
      trigger: "promote",
      sha: first,
      components: { app: first },
      promotedFrom: { env: "staging", deployId: staged.id, deployNumber: staged.number },
      ignoredSafeties: [],
    });
    const done = await t.waitForDeploy(res.body.deploy.id);
    expect(done.status).toBe("succeeded");
    expect(await logOf(done.id)).toContain(`production at ${first}`);

    const releases = await t.api("GET", "/api/v1/apps/shop/environments/production/releases");
    expect(releases.body.releases[0]).toMatchObject({
      components: { app: first },
      deploy: { trigger: "promote", promotedFrom: { env: "staging", deployNumber: staged.number } },
    });
    const byId = await t.api("GET", `/api/v1/deploys/${done.id}`);
    expect(byId.body.deploy.promotedFrom).toEqual({ env: "staging", deployId: staged.id, deployNumber: 1 });
    const audit = await t.api("GET", "/api/v1/audit?limit=5");
    if (audit.status === 200) expect(JSON.stringify(audit.body)).toContain("deploy.promote");
  });

  it("refuses a direct deploy into an environment that requires promotion, unless an admin gives a reason", async () => {
    const plain = await deployTo("production");
    expect(plain.status).toBe(409);
    expect(plain.body.error.code).toBe("E_PROMOTION_REQUIRED");
    expect(plain.body.error.message).toContain("promoted from staging");

    const deployer = (await t.api("POST", "/api/v1/tokens", { name: "dev", role: "deployer" })).body.token;
    const byDeployer = await deployTo("production", { reason: "hotfix" }, deployer);
    expect(byDeployer.status).toBe(409);
    expect(byDeployer.body.error.code).toBe("E_PROMOTION_REQUIRED");
    const blank = await deployTo("production", { reason: "   " });
    expect(blank.body.error.code).toBe("E_PROMOTION_REQUIRED");
    expect(await t.store.deploys.list({ env: "production", limit: 5 })).toEqual([]);

    const readiness = await t.api("GET", "/api/v1/apps/shop/environments/production/deploy-readiness");
    expect(readiness.body.readiness.reasons.map((r: { code: string }) => r.code)).toContain(
      "promotion_required",
    );
    expect(readiness.body.readiness.ready).toBe(false);

    const admin = await deployTo("production", { reason: "staging is down, hotfix approved by ops" });
    expect(admin.status).toBe(202);
    expect(admin.body.deploy).toMatchObject({
      reason: "staging is down, hotfix approved by ops",
      ignoredSafeties: ["promotion"],
      promotedFrom: null,
    });
    expect((await t.waitForDeploy(admin.body.deploy.id)).status).toBe("succeeded");
    // Other environments are not concerned.
    expect((await deployTo("qa")).status).toBe(202);
  });

  it("refuses promotions from another environment than the required one, from nothing, and too early", async () => {
    const noRelease = await t.api("POST", "/api/v1/apps/shop/environments/production/promote", {
      from: "staging",
    });
    expect(noRelease.status).toBe(409);
    expect(noRelease.body.error.code).toBe("E_NO_RELEASE");

    expect((await t.waitForDeploy((await deployTo("qa")).body.deploy.id)).status).toBe("succeeded");
    const wrong = await t.api("POST", "/api/v1/apps/shop/environments/production/promote", { from: "qa" });
    expect(wrong.status).toBe(409);
    expect(wrong.body.error.code).toBe("E_PROMOTION_REQUIRED");
    const self = await t.api("POST", "/api/v1/apps/shop/environments/qa/promote", { from: "qa" });
    expect(self.body.error.code).toBe("E_VALIDATION");
    const unknown = await t.api("POST", "/api/v1/apps/shop/environments/qa/promote", { from: "nope" });
    expect(unknown.status).toBe(404);
    const extra = await t.api("POST", "/api/v1/apps/shop/environments/qa/promote", {
      from: "staging",
      to: "x",
    });
    expect(extra.status).toBe(400);

    // An environment without promote_from takes promotions from anywhere.
    const intoStaging = await t.api("POST", "/api/v1/apps/shop/environments/staging/promote", { from: "qa" });
    expect(intoStaging.status).toBe(202);
    expect((await t.waitForDeploy(intoStaging.body.deploy.id)).status).toBe("succeeded");

    await t.writeManifest(
      "shop",
      MANIFEST.replace("promote_from: staging", "promote_from: staging\n    min_live: 1h"),
    );
    const early = await t.api("POST", "/api/v1/apps/shop/environments/production/promote", {
      from: "staging",
    });
    expect(early.status).toBe(409);
    expect(early.body.error.code).toBe("E_PROMOTION_TOO_EARLY");
    expect(early.body.error.details.minLiveMs).toBe(3_600_000);
    expect(await t.store.deploys.list({ env: "production", limit: 5 })).toEqual([]);
  });

  it("promotes through the CLI and shows where the release came from in history", async () => {
    const home = tempDir("turnout-promote-cli-");
    const env = { HOME: home, XDG_CONFIG_HOME: path.join(home, ".config") };
    const auth = ["--server", t.url, "--token", t.adminToken];
    const staged = await t.waitForDeploy((await deployTo("staging")).body.deploy.id);
    expect(staged.status).toBe("succeeded");

    const refused = await turnout(["deploy", "shop", "production", ...auth], { env, cwd: home });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain("E_PROMOTION_REQUIRED");

    const promoted = await turnout(
      ["promote", "shop", "--from", "staging", "--to", "production", "--follow", ...auth],
      { env, cwd: home },
    );
    expect(promoted.code).toBe(0);
    expect(promoted.stderr + promoted.stdout).toContain("promoted from shop/staging#1");
    const history = await turnout(["history", "shop", "production", ...auth], { env, cwd: home });
    expect(history.code).toBe(0);
    expect(history.stdout).toContain("promote (staging#1)");
    const status = await turnout(["status", "shop", "production", ...auth], { env, cwd: home });
    expect(status.code).toBe(0);
    expect(status.stdout).toContain("promote (staging#1)");

    const direct = await turnout(["deploy", "shop", "production", "--reason", "hotfix", "--json", ...auth], {
      env,
      cwd: home,
    });
    expect(direct.code).toBe(0);
    expect(JSON.parse(direct.stdout).deploy).toMatchObject({
      reason: "hotfix",
      ignoredSafeties: ["promotion"],
    });
  });
});
