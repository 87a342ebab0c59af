import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { type FakeGithub, startFakeGithub } from "../helpers/fake-github.js";
import { startTurnout, type TestTurnout } from "../helpers/turnout.js";
import { until } from "../helpers/wait.js";

/** The CI gate end to end: a real deploy waits on a local server speaking GitHub's statuses and check-runs API. */
describe("CI gates", () => {
  let t: TestTurnout;
  let github: FakeGithub;

  beforeEach(async () => {
    github = await startFakeGithub({ token: "gh-token-123", prefix: "/api/v3", repos: ["acme/shop"] });
    t = await startTurnout({
      environment: { GH_TOKEN: "gh-token-123" },
      manifest: `repo: "{repo}"
github:
  repository: acme/shop
  api_url: ${github.url}
  token_env: GH_TOKEN
environments:
  staging:
    checks: [ci/build, lint]
    checks_poll: 100ms
    checks_timeout: 20s
    deploy:
      provider: shell
      script: echo "deployed $TURNOUT_SHA"
  production:
    checks: [ci/build]
    checks_poll: 100ms
    checks_timeout: 1s
    deploy:
      provider: shell
      script: echo "deployed"
  qa:
    check_command: [bash, -c, 'test -f "$TURNOUT_WORKSPACE/QA_OK" || exit 1']
    checks_poll: 100ms
    deploy:
      provider: shell
      script: echo "qa deployed"
`,
    });
  });
  afterEach(async () => {
    await t?.stop();
    await github?.close();
  });

  const logOf = async (id: number) => (await t.store.logs.read(id, 0)).chunks.map((c) => c.text).join("");

  it("waits in state `waiting` (phase checks) until every required check succeeds", async () => {
    const res = await t.api("POST", "/api/v1/apps/shop/environments/staging/deploys", {});
    const id = res.body.deploy.id;
    await until(async () => (await t.store.deploys.get(id)).status === "waiting", 10_000, "waiting");
    expect((await t.store.deploys.get(id)).phase).toBe("checks");
    github.setStatus("acme/shop", t.repo.head, "ci/build", "success");
    await new Promise((r) => setTimeout(r, 300));
    expect((await t.store.deploys.get(id)).status).toBe("waiting");
    github.setCheckRun("acme/shop", t.repo.head, "lint", "completed", "success");
    const done = await t.waitForDeploy(id);
    expect(done.status).toBe("succeeded");
    const log = await logOf(id);
    expect(log).toContain("waiting for checks");
    expect(log).toContain("checks passed");
    expect(github.requests.every((r) => r.authorization === "Bearer gh-token-123")).toBe(true);
    expect(log).not.toContain("gh-token-123");
  });

  it("fails with E_CHECKS_FAILED naming the failed check", async () => {
    github.setStatus("acme/shop", t.repo.head, "ci/build", "success");
    github.setCheckRun("acme/shop", t.repo.head, "lint", "completed", "failure");
    const res = await t.api("POST", "/api/v1/apps/shop/environments/staging/deploys", {});
    const done = await t.waitForDeploy(res.body.deploy.id);
    expect(done).toMatchObject({ status: "failed", errorCode: "E_CHECKS_FAILED" });
    expect(done.errorMessage).toContain("lint");
    expect(await logOf(done.id)).not.toContain("deployed");
  });

  it("fails with E_CHECKS_TIMEOUT when checks never finish", async () => {
    github.setStatus("acme/shop", t.repo.head, "ci/build", "pending");
    const res = await t.api("POST", "/api/v1/apps/shop/environments/production/deploys", {});
    const done = await t.waitForDeploy(res.body.deploy.id);
    expect(done).toMatchObject({ status: "failed", errorCode: "E_CHECKS_TIMEOUT" });
  });

  it("skips the gate with force (admins) and records the skip as an ignored safety", async () => {
    const res = await t.api("POST", "/api/v1/apps/shop/environments/staging/deploys", { force: true });
    expect(res.body.deploy.ignoredSafeties).toEqual(["checks"]);
    const done = await t.waitForDeploy(res.body.deploy.id);
    expect(done.status).toBe("succeeded");
    expect(await logOf(done.id)).toContain("ignoring safeties: checks");
  });

  it("lets only admins force past the checks", async () => {
    const deployer = (await t.api("POST", "/api/v1/tokens", { name: "dev", role: "deployer" })).body.token;
    const refused = await t.api(
      "POST",
      "/api/v1/apps/shop/environments/staging/deploys",
      { force: true },
      deployer,
    );
    expect(refused.status).toBe(403);
    expect(refused.body.error.code).toBe("E_FORBIDDEN");
    expect(await t.store.deploys.list({ limit: 5 })).toEqual([]);
  });

  it("shows each pending commit's check state in the change preview", async () => {
    github.setStatus("acme/shop", t.repo.head, "ci/build", "success");
    github.setStatus("acme/shop", t.repo.head, "lint", "success");
    const first = await t.waitForDeploy(
      (await t.api("POST", "/api/v1/apps/shop/environments/staging/deploys", {})).body.deploy.id,
    );
    expect(first.status).toBe("succeeded");
    const green = await t.repo.commit({ VERSION: "2\n" }, "green change");
    github.setStatus("acme/shop", green, "ci/build", "success");
    github.setStatus("acme/shop", green, "lint", "success");
    const red = await t.repo.commit({ VERSION: "3\n" }, "red change");
    github.setStatus("acme/shop", red, "ci/build", "failure");
    const pending = await t.api("GET", "/api/v1/apps/shop/environments/staging/pending");
    expect(pending.status).toBe(200);
    expect(pending.body.components[0].commits.map((c: any) => [c.subject, c.checks])).toEqual([
      ["red change", "failure"],
      ["green change", "success"],
    ]);
  });

  it("serves repositories not on GitHub with a check_command run in the workspace", async () => {
    const refused = await t.waitForDeploy(
      (await t.api("POST", "/api/v1/apps/shop/environments/qa/deploys", {})).body.deploy.id,
    );
    expect(refused).toMatchObject({ status: "failed", errorCode: "E_CHECKS_FAILED" });
    await t.repo.commit({ QA_OK: "yes\n" }, "qa ok");
    const passed = await t.waitForDeploy(
      (await t.api("POST", "/api/v1/apps/shop/environments/qa/deploys", {})).body.deploy.id,
    );
    expect(passed.status).toBe("succeeded");
    expect(await logOf(passed.id)).toContain("qa deployed");
  });
});
