// biome-ignore-all lint/suspicious/noExplicitAny: API responses are untyped JSON in these tests
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Deploy } from "../../src/domain/deploy.js";
import { deployEvent, type NotifyEventKind } from "../../src/domain/notification-event.js";
import type { Channel } from "../../src/notify/channel.js";
import { githubDeploymentsFactory } from "../../src/notify/channels/github-deployments.js";
import { Dispatcher } from "../../src/notify/dispatcher.js";
import {
  type FakeGithubDeployments,
  startFakeGithubDeployments,
} from "../helpers/fake-github-deployments.js";
import { startTurnout, type TestTurnout } from "../helpers/turnout.js";
import { until } from "../helpers/wait.js";
import { githubRequest, post } from "../http/webhooks-helpers.js";

/**
 * The github-deployments channel through the real outbox and dispatcher,
 * fed with the events of real deploys of the real server, against a local
 * server speaking GitHub's Deployments API that checks what it receives.
 * GitHub deployment events come in through the real webhook route.
 */
const TOKEN = "ghp_test_token_0123456789";
const HOOK_SECRET = "hook-secret";
const REPO = "acme/shop";
const MINE = "test-report";

let t: TestTurnout;
let github: FakeGithubDeployments;
let enterprise: FakeGithubDeployments;

const MANIFEST = `repo: "{repo}"
webhook:
  secret_env: SHOP_HOOK
github:
  repository: ${REPO}
  deploy_on_deployment_event: true
environments:
  staging:
    branch: main
    deploy:
      provider: shell
      script: |
        echo "deploying $TURNOUT_SHA for GitHub deployment \${TURNOUT_PARAM_GITHUB_DEPLOYMENT_ID:-none}"
  production:
    branch: main
    deploy:
      provider: shell
      command: ["true"]
`;

beforeAll(async () => {
  github = await startFakeGithubDeployments({ token: TOKEN, repos: [REPO] });
  enterprise = await startFakeGithubDeployments({ token: TOKEN, repos: [REPO], prefix: "/api/v3" });
  t = await startTurnout({ manifest: MANIFEST, environment: { SHOP_HOOK: HOOK_SECRET } });
  // These tests deliver the events they choose with a dispatcher of their own; the server's would
  // fan them out to the (no) channels of its settings first.
  await t.server.notifier.stop();
  await t.writeManifest(
    "plain",
    `repo: "{repo}"\nwebhook:\n  secret_env: SHOP_HOOK\ngithub:\n  repository: ${REPO}\nenvironments:\n  staging:\n    deploy:\n      provider: shell\n      command: ["true"]\n`,
  );
});

afterAll(async () => {
  await t?.stop();
  await github?.close();
  await enterprise?.close();
});

function channel(name: string, options: Record<string, unknown>): Channel {
  return githubDeploymentsFactory({
    app: (name) => t.engine.config().apps.get(name),
    deploy: (id) => t.store.deploys.get(id),
  }).create(name, options, { report: () => undefined });
}

const page = (id: number) => `${t.url}/#/deploys/${id}`;

/** Records the events of `deploy` and lets a dispatcher with `ch` deliver them all. */
async function report(ch: Channel, deploy: Deploy, kinds: NotifyEventKind[]): Promise<void> {
  for (const kind of kinds) {
    await t.store.notify.record({ ...deployEvent(deploy, kind, new Date().toISOString()), actor: MINE });
  }
  const dispatcher = new Dispatcher({
    store: t.store.notify,
    channels: new Map([[ch.name, ch]]),
    // Only the events recorded here: the engine records its own as the deploys run.
    plan: (event) => (event.actor === MINE ? [ch.name] : []),
    owner: "test",
    links: (event) => (event.deploy ? { deploy: page(event.deploy.id) } : {}),
    retry: { baseMs: 1, maxMs: 5, maxAttempts: 5, maxAgeMs: 60_000 },
    report: () => undefined,
  });
  await until(
    async () => {
      await dispatcher.round();
      const pending = await t.store.notify.list({ app: deploy.app, status: "pending", limit: 10 });
      return pending.length === 0 && (await t.store.notify.pendingEvents()) === 0;
    },
    20_000,
    "every delivery done",
  );
}

async function deployNow(env = "staging"): Promise<Deploy> {
  const response = await t.api("POST", `/api/v1/apps/shop/environments/${env}/deploys`, {});
  expect(response.status).toBe(202);
  return t.waitForDeploy(response.body.deploy.id);
}

describe("GitHub Deployments channel", () => {
  it("makes each deploy a GitHub deployment whose statuses follow it; success retires the one before", async () => {
    const ch = channel("github", { token: TOKEN, api_url: github.url });
    const first = await deployNow();
    await report(ch, first, ["deploy.queued", "deploy.started", "deploy.succeeded"]);
    expect(github.deployments).toHaveLength(1);
    const made = github.deployments[0]!;
    expect(made).toMatchObject({ repo: REPO, sha: first.sha, environment: "staging" });
    expect(made.body).toMatchObject({
      ref: first.sha,
      environment: "staging",
      auto_merge: false,
      required_contexts: [],
      production_environment: false,
      payload: { turnout: { deploy: first.id, label: `shop/staging#${first.number}` } },
    });
    expect(made.statuses.map((s) => s.state)).toEqual(["queued", "in_progress", "success"]);
    expect(made.statuses.every((s) => s.log_url === page(first.id))).toBe(true);
    expect(github.calls.slice(0, 4)).toEqual([
      `POST /repos/${REPO}/deployments`,
      `POST /repos/${REPO}/deployments/${made.id}/statuses`,
      `POST /repos/${REPO}/deployments/${made.id}/statuses`,
      `POST /repos/${REPO}/deployments/${made.id}/statuses`,
    ]);
    // The channel remembered the deployment for the deploy (no secret in it).
    const delivered = await t.store.notify.list({ app: "shop", deployId: first.id, limit: 10 });
    expect(delivered.map((d) => d.status)).toEqual(["delivered", "delivered", "delivered"]);

    await t.repo.commit({ VERSION: "2.0.0\n" }, "second");
    const second = await deployNow();
    await report(ch, second, ["deploy.started", "deploy.succeeded"]);
    expect(github.deployments).toHaveLength(2);
    expect(github.deployments[1]!.statuses.map((s) => s.state)).toEqual(["in_progress", "success"]);
    // GitHub's auto_inactive (sent with the success) retired the first one.
    expect(made.statuses.map((s) => s.state)).toEqual(["queued", "in_progress", "success", "inactive"]);
    expect(github.problems).toEqual([]);
  });

  it("reports failure, error (interrupted) and inactive (cancelled); production is a production environment", async () => {
    const ch = channel("github", { token: TOKEN, api_url: github.url });
    const outcomes: Array<[NotifyEventKind, string]> = [
      ["deploy.failed", "failure"],
      ["deploy.rolled_back", "failure"],
      ["deploy.interrupted", "error"],
      ["deploy.cancelled", "inactive"],
    ];
    for (const [kind, state] of outcomes) {
      const deploy = await deployNow("production");
      const before = github.deployments.length;
      await report(ch, deploy, ["deploy.started", kind]);
      const made = github.deployments[before]!;
      expect(made.body["production_environment"], kind).toBe(true);
      expect(
        made.statuses.map((s) => s.state),
        kind,
      ).toEqual(["in_progress", state]);
    }
    expect(github.problems).toEqual([]);
  });

  it("speaks to GitHub Enterprise at its API base", async () => {
    const ch = channel("ghe", { token: TOKEN, api_url: enterprise.url });
    const deploy = await deployNow();
    await report(ch, deploy, ["deploy.started", "deploy.succeeded"]);
    expect(enterprise.calls[0]).toBe(`POST /api/v3/repos/${REPO}/deployments`);
    expect(enterprise.deployments.at(-1)!.statuses.map((s) => s.state)).toEqual(["in_progress", "success"]);
    expect(enterprise.problems).toEqual([]);
  });

  it("gives up on bad credentials (nothing created) and finds its deployment again after a lost answer", async () => {
    const bad = channel("github-bad", { token: "wrong", api_url: github.url });
    const deploy = await deployNow();
    const before = github.deployments.length;
    await report(bad, deploy, ["deploy.started"]);
    const [failed] = await t.store.notify.list({ app: "shop", channel: "github-bad", limit: 1 });
    expect(failed).toMatchObject({ status: "failed", lastError: "GitHub refused it: HTTP 401" });
    expect(failed!.lastError).not.toContain("wrong");
    expect(github.deployments).toHaveLength(before);

    // GitHub creates the deployment but the answer is a 502: the retry must not create a second one.
    const ch = channel("github", { token: TOKEN, api_url: github.url });
    github.failNext(502, 1, { afterWork: true });
    await report(ch, deploy, ["deploy.started", "deploy.succeeded"]);
    const mine = github.deployments.filter((d) => (d.payload as any)?.turnout?.deploy === deploy.id);
    expect(mine).toHaveLength(1);
    expect(github.calls).toContain(`GET /repos/${REPO}/deployments`);
    expect(mine[0]!.statuses.map((s) => s.state)).toEqual(["in_progress", "success"]);
  });

  it("refuses options without a token, naming the field and not the value", () => {
    expect(() => channel("x", { api_url: github.url })).toThrow(
      /notify channel x: token: missing or invalid/,
    );
    expect(() => channel("x", { token: TOKEN, colour: "red" })).toThrow(/notify channel x/);
  });
});

describe("GitHub deployment events", () => {
  const hook = (payload: unknown, query = "?app=shop", secret = HOOK_SECRET) => {
    const request = githubRequest(JSON.stringify(payload), { secret, event: "deployment" });
    return post(`${t.url}/api/v1/webhooks/github${query}`, request.body, request.headers);
  };
  const event = (id: number, sha: string, environment: string, extra: Record<string, unknown> = {}) => ({
    action: "created",
    deployment: {
      id,
      sha,
      ref: "main",
      environment,
      task: "deploy",
      payload: {},
      creator: { login: "hubot" },
      ...extra,
    },
    repository: { full_name: REPO, clone_url: `https://github.com/${REPO}.git` },
  });

  it("deploys the deployment's commit to its environment, and reports on that deployment", async () => {
    const sha = t.repo.head;
    const theirs = github.addDeployment(REPO, sha, "staging");
    const before = github.deployments.length;
    const response = await hook(event(theirs.id, sha, "staging"));
    expect(response.status).toBe(202);
    const started = (response.body as any).deploys[0];
    expect(started).toMatchObject({
      app: "shop",
      env: "staging",
      sha,
      trigger: "webhook",
      user: "github:hubot",
    });
    expect(started.params).toEqual({ GITHUB_DEPLOYMENT_ID: String(theirs.id) });
    const deploy = await t.waitForDeploy(started.id);
    expect(deploy.status).toBe("succeeded");
    const log = await t.api("GET", `/api/v1/deploys/${deploy.id}/log`);
    expect(JSON.stringify(log.body)).toContain(`for GitHub deployment ${theirs.id}`);

    await report(channel("github", { token: TOKEN, api_url: github.url }), deploy, [
      "deploy.queued",
      "deploy.started",
      "deploy.succeeded",
    ]);
    expect(github.deployments).toHaveLength(before);
    expect(theirs.statuses.map((s) => s.state)).toEqual(["queued", "in_progress", "success"]);
    expect(theirs.statuses[0]!.log_url).toBe(page(deploy.id));

    // A redelivery starts nothing.
    const again = githubRequest(JSON.stringify(event(theirs.id, sha, "staging")), {
      secret: HOOK_SECRET,
      event: "deployment",
      delivery: "fixed-delivery",
    });
    const url = `${t.url}/api/v1/webhooks/github?app=shop`;
    expect((await post(url, again.body, again.headers)).status).toBe(202);
    const count = (await t.store.deploys.list({ app: "shop", env: "staging", limit: 500 })).length;
    expect((await post(url, again.body, again.headers)).body).toEqual({ duplicate: true });
    expect((await t.store.deploys.list({ app: "shop", env: "staging", limit: 500 })).length).toBe(count);
    await until(
      async () =>
        (await t.store.deploys.list({ app: "shop", env: "staging", status: "queued", limit: 5 })).length ===
        0,
    );
  });

  it("refuses unknown or malformed environments and SHAs, ignores its own deployments and apps that did not opt in", async () => {
    const sha = t.repo.head;
    const count = async () => (await t.store.deploys.list({ app: "shop", limit: 500 })).length;
    await until(async () => {
      const active = await t.store.deploys.list({ app: "shop", limit: 5 });
      return active.every((d: Deploy) => ["succeeded", "failed", "cancelled"].includes(d.status));
    });
    const before = await count();

    const unknown = await hook(event(77, sha, "qa"));
    expect(unknown.status).toBe(404);
    expect((unknown.body as any).error.code).toBe("E_NOT_FOUND");
    const malformed = await hook(event(78, sha, "../prod"));
    expect(malformed.status).toBe(422);
    expect((malformed.body as any).error.code).toBe("E_INVALID_NAME");
    const badSha = await hook(event(79, "--upload-pack=touch", "staging"));
    expect((badSha.body as any).error.code).toBe("E_INVALID_REF");
    const own = await hook(event(80, sha, "staging", { payload: { turnout: { deploy: 1 } } }));
    expect(own.body).toEqual({ ignored: "deployment created by Turnout" });
    const notOptedIn = await hook(event(81, sha, "staging"), "?app=plain");
    expect(notOptedIn.body).toEqual({ ignored: "deployment" });
    const forged = await hook(event(82, sha, "staging"), "?app=shop", "not-the-secret");
    expect(forged.status).toBe(401);

    expect(await count()).toBe(before);
    expect((await t.store.deploys.list({ app: "plain", limit: 5 })).length).toBe(0);
  });
});
