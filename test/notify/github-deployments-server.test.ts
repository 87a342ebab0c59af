// biome-ignore-all lint/suspicious/noExplicitAny: API responses are untyped JSON in these tests
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type FakeGithubDeployments,
  startFakeGithubDeployments,
} from "../helpers/fake-github-deployments.js";
import { startTurnout, type TestTurnout } from "../helpers/turnout.js";
import { until } from "../helpers/wait.js";
import { githubRequest, post } from "../http/webhooks-helpers.js";

/**
 * The github-deployments channel as the server wires it: configured in the
 * settings file (token from the environment), subscribed in the manifest,
 * fed by the engine's own events through the outbox, against a local
 * server speaking GitHub's Deployments API.
 */
const TOKEN = "ghp_server_token_abcdef";
const REPO = "acme/shop";
const PUBLIC = "https://turnout.example.test";

let t: TestTurnout;
let github: FakeGithubDeployments;

beforeAll(async () => {
  github = await startFakeGithubDeployments({ token: TOKEN, repos: [REPO] });
  t = await startTurnout({
    environment: { GH_DEPLOY_TOKEN: TOKEN, SHOP_HOOK: "hook-secret" },
    settingsFile: `
public_url: ${PUBLIC}
notify:
  retry: { base: 50ms, max: 200ms }
  channels:
    github: { type: github-deployments, token_env: GH_DEPLOY_TOKEN, api_url: "${github.url}" }
`,
    notify: { idleMs: 50, settleMs: 50 },
    manifest: `repo: "{repo}"
webhook:
  secret_env: SHOP_HOOK
github:
  repository: ${REPO}
  deploy_on_deployment_event: true
notify:
  - channel: github
    events: [deploy.*]
environments:
  staging:
    deploy:
      provider: shell
      command: [bash, deploy.sh, "{env}", "{sha}", "{ref}"]
      timeout: 2m
`,
  });
}, 120_000);

afterAll(async () => {
  await t?.stop();
  await github?.close();
});

describe("GitHub Deployments, wired in the server", () => {
  it("a deploy through the API shows on GitHub: queued, in_progress, success, with the deploy's page", async () => {
    const res = await t.api("POST", "/api/v1/apps/shop/environments/staging/deploys", {});
    expect(res.status).toBe(202);
    const deploy = await t.waitForDeploy(res.body.deploy.id);
    expect(deploy.status).toBe("succeeded");
    await until(
      () => github.deployments.some((d) => d.statuses.some((s) => s.state === "success")),
      20_000,
      "the success status",
    );
    expect(github.deployments).toHaveLength(1);
    const made = github.deployments[0]!;
    expect(made).toMatchObject({ sha: deploy.sha, environment: "staging" });
    expect(made.statuses.map((s) => s.state)).toEqual(["queued", "in_progress", "success"]);
    expect(made.statuses[0]!.log_url).toBe(`${PUBLIC}/#/deploys/${deploy.id}`);
    expect(github.problems).toEqual([]);
  });

  it("a GitHub deployment event deploys its commit and its statuses go to that deployment", async () => {
    const theirs = github.addDeployment(REPO, t.repo.head, "staging");
    const payload = JSON.stringify({
      action: "created",
      deployment: {
        id: theirs.id,
        sha: t.repo.head,
        environment: "staging",
        payload: {},
        creator: { login: "hubot" },
      },
      repository: { full_name: REPO },
    });
    const request = githubRequest(payload, { secret: "hook-secret", event: "deployment" });
    const answer = await post(`${t.url}/api/v1/webhooks/github?app=shop`, request.body, request.headers);
    expect(answer.status).toBe(202);
    const id = (answer.body as any).deploys[0].id;
    expect((await t.waitForDeploy(id)).status).toBe("succeeded");
    await until(
      () => theirs.statuses.some((s) => s.state === "success"),
      20_000,
      "success on their deployment",
    );
    expect(theirs.statuses.map((s) => s.state)).toEqual(["queued", "in_progress", "success"]);
    expect(github.deployments).toHaveLength(2);
    // GitHub retired the deployment before it.
    expect(github.deployments[0]!.statuses.at(-1)!.state).toBe("inactive");
    // Outcomes are recorded when the round's chains are all answered, a moment after GitHub saw them.
    const list = () => t.api("GET", `/api/v1/apps/shop/deliveries?deploy=${id}`);
    await until(
      async () => (await list()).body.deliveries.every((d: any) => d.status === "delivered"),
      10_000,
    );
    const deliveries = await list();
    expect(deliveries.status).toBe(200);
    expect(deliveries.body.deliveries.map((d: any) => d.status)).toEqual([
      "delivered",
      "delivered",
      "delivered",
    ]);
    expect(JSON.stringify(deliveries.body)).not.toContain(TOKEN);
  });
});
