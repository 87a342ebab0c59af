// biome-ignore-all lint/suspicious/noExplicitAny: API responses are untyped JSON in these tests
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTurnout, type TestTurnout } from "../helpers/turnout.js";
import { until } from "../helpers/wait.js";

/**
 * The deploy lifecycle through the API, end to end: apps and environments,
 * deploys, history, rollback, locks, queue and cancel, listing with cursors.
 * Real server, engine, store, git repository and shell commands.
 */
let t: TestTurnout;
let deployerToken: string;
let viewerToken: string;

const SLOW_MANIFEST = `repo: "{repo}"
environments:
  prod:
    branch: main
    deploy:
      provider: shell
      script: |
        echo started
        sleep 30
      timeout: 2m
`;

const BLOG_MANIFEST = `repo: "https://user:s3cret-token@git.example.com/acme/blog.git"
environments:
  live:
    branch: main
    deploy:
      provider: shell
      command: [echo, "{sha}"]
`;

beforeAll(async () => {
  t = await startTurnout();
  await t.writeManifest("slow", SLOW_MANIFEST);
  await t.writeManifest("blog", BLOG_MANIFEST);
  deployerToken = (await t.api("POST", "/api/v1/tokens", { name: "deployer", role: "deployer" })).body.token;
  viewerToken = (await t.api("POST", "/api/v1/tokens", { name: "viewer", role: "viewer" })).body.token;
});

afterAll(async () => {
  await t?.stop();
});

async function deploy(app: string, env: string, body: unknown = {}, token?: string) {
  return t.api("POST", `/api/v1/apps/${app}/environments/${env}/deploys`, body, token);
}

describe("apps and environments", () => {
  it("GET /apps lists every app with its environments, repo credentials stripped", async () => {
    const res = await t.api("GET", "/api/v1/apps", undefined, viewerToken);
    expect(res.status).toBe(200);
    expect(res.body.problems).toEqual([]);
    expect(res.body.apps.map((a: any) => a.name)).toEqual(["blog", "shop", "slow"]);
    const shop = res.body.apps.find((a: any) => a.name === "shop");
    expect(shop.repo).toBe(t.repo.path);
    expect(shop.environments.map((e: any) => e.name).sort()).toEqual(["production", "staging"]);
    expect(shop.environments.find((e: any) => e.name === "staging")).toEqual({
      app: "shop",
      name: "staging",
      branch: "main",
      autoDeploy: false,
      provider: "shell",
      lock: null,
      current: null,
      active: null,
      queued: 0,
      // No emergency deploy of a working tree runs there.
      unreviewed: null,
    });
    const blog = res.body.apps.find((a: any) => a.name === "blog");
    expect(blog.repo).toBe("https://git.example.com/acme/blog.git");
    expect(JSON.stringify(res.body)).not.toContain("s3cret-token");
  });

  it("GET /apps/:app gives one app", async () => {
    const res = await t.api("GET", "/api/v1/apps/shop");
    expect(res.status).toBe(200);
    expect(res.body.app.name).toBe("shop");
    expect(res.body.app.environments).toHaveLength(2);
  });

  it("shows configuration problems to readers", async () => {
    await t.writeManifest("broken", "repo: 42\nenvironments: nope\n");
    try {
      const res = await t.api("GET", "/api/v1/apps", undefined, viewerToken);
      expect(res.body.problems.length).toBeGreaterThan(0);
      expect(res.body.problems[0].file).toContain("broken");
      const config = await t.api("GET", "/api/v1/config", undefined, viewerToken);
      expect(config.body.problems.length).toBeGreaterThan(0);
    } finally {
      const { rmSync } = await import("node:fs");
      rmSync(`${t.configDir}/broken.yaml`);
      await t.server.config.refresh();
    }
  });
});

describe("deploys, history and rollback", () => {
  let first: any;
  let second: any;

  it("POST …/deploys answers 202 with Location and the deploy; it runs to success", async () => {
    const res = await deploy(
      "shop",
      "staging",
      { trigger: "cli", params: { GREETING: "hello" } },
      deployerToken,
    );
    expect(res.status).toBe(202);
    first = res.body.deploy;
    expect(res.headers.get("location")).toBe(`/api/v1/deploys/${first.id}`);
    expect(first).toMatchObject({
      app: "shop",
      env: "staging",
      number: 1,
      label: "shop/staging#1",
      url: `/api/v1/deploys/${first.id}`,
      trigger: "cli",
      user: "deployer",
      ref: "main",
      params: { GREETING: "hello" },
      force: false,
    });
    expect(first.sha).toMatch(/^[0-9a-f]{40}$/);
    expect(["queued", "running"]).toContain(first.status);
    expect((await t.waitForDeploy(first.id)).status).toBe("succeeded");
  });

  it("the trigger defaults to api", async () => {
    await t.repo.commit({ VERSION: "2.0.0\n" }, "second");
    const sha = await t.repo.commit({ VERSION: "2.0.1\n" }, "third");
    const res = await deploy("shop", "staging");
    expect(res.status).toBe(202);
    second = res.body.deploy;
    expect(second).toMatchObject({ number: 2, trigger: "api", user: "admin", sha, previousSha: first.sha });
    expect((await t.waitForDeploy(second.id)).status).toBe("succeeded");
  });

  it("GET a deploy by id, by label and by number", async () => {
    const byId = await t.api("GET", `/api/v1/deploys/${first.id}`, undefined, viewerToken);
    expect(byId.status).toBe(200);
    expect(byId.body.deploy).toMatchObject({ id: first.id, status: "succeeded", label: "shop/staging#1" });
    expect(byId.body.deploy.finishedAt).not.toBeNull();
    const byLabel = await t.api("GET", `/api/v1/deploys/${encodeURIComponent("shop/staging#1")}`);
    expect(byLabel.body.deploy.id).toBe(first.id);
    const byNumber = await t.api("GET", "/api/v1/apps/shop/environments/staging/deploys/2");
    expect(byNumber.status).toBe(200);
    expect(byNumber.body.deploy).toMatchObject({
      id: second.id,
      number: 2,
      url: `/api/v1/deploys/${second.id}`,
    });
  });

  it("GET the environment: current release, recent deploys, empty queue", async () => {
    const res = await t.api("GET", "/api/v1/apps/shop/environments/staging", undefined, viewerToken);
    expect(res.status).toBe(200);
    const env = res.body.environment;
    expect(env).toMatchObject({
      app: "shop",
      name: "staging",
      lock: null,
      active: null,
      queued: 0,
      queue: [],
    });
    expect(env.current).toMatchObject({ deployId: second.id, deployNumber: 2, sha: second.sha });
    expect(env.current.fingerprint).toMatch(/^[0-9a-f]{64}$/);
    expect(env.recent.map((d: any) => d.number)).toEqual([2, 1]);
    expect(env.recent[0].label).toBe("shop/staging#2");
  });

  it("GET …/releases: newest first, with the deploy, without environmentConfig", async () => {
    const res = await t.api("GET", "/api/v1/apps/shop/environments/staging/releases", undefined, viewerToken);
    expect(res.status).toBe(200);
    const releases = res.body.releases;
    expect(releases.map((r: any) => r.deploy.number)).toEqual([2, 1]);
    expect(releases[0].deploy).toMatchObject({ number: 2, user: "admin", trigger: "api" });
    expect(releases[0].deploy.finishedAt).not.toBeNull();
    expect(Object.values(releases[0].components)).toEqual([second.sha]);
    for (const release of releases) expect(release).not.toHaveProperty("environmentConfig");
    const limited = await t.api("GET", "/api/v1/apps/shop/environments/staging/releases?limit=1");
    expect(limited.body.releases).toHaveLength(1);
  });

  it("POST …/rollback brings back the previous release (202 + Location)", async () => {
    const res = await t.api("POST", "/api/v1/apps/shop/environments/staging/rollback", {}, deployerToken);
    expect(res.status).toBe(202);
    const rollback = res.body.deploy;
    expect(res.headers.get("location")).toBe(`/api/v1/deploys/${rollback.id}`);
    expect(rollback).toMatchObject({ number: 3, trigger: "rollback", rollbackOf: 1, sha: first.sha });
    expect((await t.waitForDeploy(rollback.id)).status).toBe("succeeded");
    const env = await t.api("GET", "/api/v1/apps/shop/environments/staging");
    expect(env.body.environment.current).toMatchObject({ deployNumber: 3, sha: first.sha });
  });

  it("rollback to a deploy without a release is 409 E_NO_RELEASE", async () => {
    const res = await t.api("POST", "/api/v1/apps/shop/environments/staging/rollback", { to: 99 });
    expect(res.status).toBe(409);
    expect(res.body.error.code).toBe("E_NO_RELEASE");
    const none = await t.api("POST", "/api/v1/apps/shop/environments/production/rollback");
    expect(none.status).toBe(409);
  });

  it("a ref that does not exist is 422 and queues nothing", async () => {
    const before = (await t.store.deploys.list({ app: "shop", limit: 100 })).length;
    const res = await deploy("shop", "staging", { ref: "no-such-branch" });
    expect(res.status).toBe(422);
    expect(res.body.error.code).toBe("E_REF_NOT_FOUND");
    expect((await t.store.deploys.list({ app: "shop", limit: 100 })).length).toBe(before);
  });
});

describe("locks", () => {
  it("PUT lock, then deploys are 409 E_LOCKED with the reason; admins may force", async () => {
    const locked = await t.api(
      "PUT",
      "/api/v1/apps/shop/environments/production/lock",
      { reason: "investigating 500s" },
      deployerToken,
    );
    expect(locked.status).toBe(200);
    expect(locked.body.lock).toMatchObject({
      app: "shop",
      env: "production",
      lockedBy: "deployer",
      reason: "investigating 500s",
    });

    const refused = await deploy("shop", "production", {}, deployerToken);
    expect(refused.status).toBe(409);
    expect(refused.body.error.code).toBe("E_LOCKED");
    expect(refused.body.error.details).toMatchObject({ lockedBy: "deployer", reason: "investigating 500s" });
    const notForced = await deploy("shop", "production", { force: true }, deployerToken);
    expect(notForced.status).toBe(409);

    const env = await t.api("GET", "/api/v1/apps/shop/environments/production");
    expect(env.body.environment.lock).toMatchObject({ reason: "investigating 500s" });
    expect(env.body.environment.recent).toEqual([]);

    const forced = await deploy("shop", "production", { force: true });
    expect(forced.status).toBe(202);
    expect(forced.body.deploy.ignoredSafeties).toEqual(["lock"]);
    expect((await t.waitForDeploy(forced.body.deploy.id)).status).toBe("succeeded");
  });

  it("someone else's lock is not taken over", async () => {
    const res = await t.api("PUT", "/api/v1/apps/shop/environments/production/lock", { reason: "mine now" });
    expect(res.status).toBe(409);
    expect(res.body.error.code).toBe("E_LOCKED");
  });

  it("DELETE lock returns the removed lock, then null", async () => {
    const removed = await t.api(
      "DELETE",
      "/api/v1/apps/shop/environments/production/lock",
      undefined,
      deployerToken,
    );
    expect(removed.status).toBe(200);
    expect(removed.body.lock).toMatchObject({ lockedBy: "deployer", reason: "investigating 500s" });
    const again = await t.api("DELETE", "/api/v1/apps/shop/environments/production/lock");
    expect(again).toMatchObject({ status: 200, body: { lock: null } });
    const ok = await deploy("shop", "production", {}, deployerToken);
    expect(ok.status).toBe(202);
    await t.waitForDeploy(ok.body.deploy.id);
  });

  it("locks and unlocks are audited", async () => {
    const res = await t.api("GET", "/api/v1/audit?app=shop&env=production", undefined, viewerToken);
    expect(res.status).toBe(200);
    const actions = res.body.events.map((e: any) => e.action);
    expect(actions).toContain("lock");
    expect(actions).toContain("unlock");
    for (const event of res.body.events) expect(event).toMatchObject({ app: "shop", env: "production" });
  });
});

describe("queue and cancel", () => {
  it("shows the active deploy and the queue; cancels both", async () => {
    const running = (await deploy("slow", "prod")).body.deploy;
    const queued = (await deploy("slow", "prod")).body.deploy;
    await until(async () => (await t.store.deploys.get(running.id)).status === "running", 15_000, "running");

    const env = (await t.api("GET", "/api/v1/apps/slow/environments/prod")).body.environment;
    expect(env.active).toMatchObject({ id: running.id, status: "running", label: "slow/prod#1" });
    expect(env.queued).toBe(1);
    expect(env.queue.map((d: any) => d.id)).toEqual([queued.id]);

    const refused = await t.api("POST", `/api/v1/deploys/${queued.id}/cancel`, undefined, viewerToken);
    expect(refused.status).toBe(403);

    const cancelledQueued = await t.api(
      "POST",
      `/api/v1/deploys/${queued.id}/cancel`,
      undefined,
      deployerToken,
    );
    expect(cancelledQueued.status).toBe(202);
    expect(cancelledQueued.body.deploy).toMatchObject({ id: queued.id, status: "cancelled" });

    const cancelledRunning = await t.api(
      "POST",
      `/api/v1/deploys/${encodeURIComponent("slow/prod#1")}/cancel`,
    );
    expect(cancelledRunning.status).toBe(202);
    expect(cancelledRunning.body.deploy).toMatchObject({ id: running.id, cancelRequested: true });
    expect((await t.waitForDeploy(running.id)).status).toBe("cancelled");

    const again = await t.api("POST", `/api/v1/deploys/${running.id}/cancel`);
    expect(again.status).toBe(409);
    expect(again.body.error.code).toBe("E_NOT_CANCELLABLE");
    expect(again.body.error.details.status).toBe("cancelled");
  });
});

describe("GET /deploys", () => {
  it("pages newest first with an opaque cursor, never repeating or skipping", async () => {
    const all = await t.store.deploys.list({ limit: 1000 });
    expect(all.length).toBeGreaterThanOrEqual(6);
    const seen: number[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const query: string = cursor ? `?limit=2&cursor=${encodeURIComponent(cursor)}` : "?limit=2";
      const res = await t.api("GET", `/api/v1/deploys${query}`, undefined, viewerToken);
      expect(res.status).toBe(200);
      expect(res.body.deploys.length).toBeLessThanOrEqual(2);
      for (const d of res.body.deploys) expect(d.url).toBe(`/api/v1/deploys/${d.id}`);
      seen.push(...res.body.deploys.map((d: any) => d.id));
      cursor = res.body.nextCursor;
      pages++;
    } while (cursor !== null && pages < 50);
    expect(seen).toEqual(all.map((d) => d.id));
  });

  it("filters by app, env and status", async () => {
    const res = await t.api("GET", "/api/v1/deploys?app=shop&env=staging&status=succeeded");
    expect(res.status).toBe(200);
    expect(res.body.deploys.map((d: any) => d.number)).toEqual([3, 2, 1]);
    expect(res.body.nextCursor).toBeNull();
    const cancelled = await t.api("GET", "/api/v1/deploys?status=cancelled");
    expect(cancelled.body.deploys.every((d: any) => d.status === "cancelled")).toBe(true);
    expect(cancelled.body.deploys).toHaveLength(2);
  });

  it("a token limited to some apps sees only their deploys, also across pages", async () => {
    const token = (
      await t.api("POST", "/api/v1/tokens", { name: "slow-only", role: "viewer", apps: ["slow"] })
    ).body.token;
    const page1 = await t.api("GET", "/api/v1/deploys?limit=1", undefined, token);
    expect(page1.status).toBe(200);
    expect(page1.body.deploys.map((d: any) => d.label)).toEqual(["slow/prod#2"]);
    expect(page1.body.nextCursor).not.toBeNull();
    const page2 = await t.api(
      "GET",
      `/api/v1/deploys?limit=5&cursor=${encodeURIComponent(page1.body.nextCursor)}`,
      undefined,
      token,
    );
    expect(page2.body.deploys.map((d: any) => d.label)).toEqual(["slow/prod#1"]);
    expect(page2.body.nextCursor).toBeNull();
    const other = await t.api(
      "GET",
      `/api/v1/deploys/${(await t.store.deploys.getByNumber("shop", "staging", 1)).id}`,
      undefined,
      token,
    );
    // Another app's deploy is not there for this token (as a deploy that does not exist).
    expect(other.status).toBe(404);
  });
});
