import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTurnout, type TestTurnout } from "../helpers/turnout.js";
import { until } from "../helpers/wait.js";
import { followLog } from "./sse-client.js";

/**
 * The API routes the web dashboard reads, against the real server: who am I,
 * the overview (commits, undeployed counts), the phase timeline, deploy
 * readiness, rollback previews, stats, live change events and browser
 * sign-in codes.
 */
let t: TestTurnout;
let viewer: string;
let scoped: string;

async function token(name: string, role: string, apps?: string[]): Promise<string> {
  const { status, body } = await t.api("POST", "/api/v1/tokens", { name, role, ...(apps ? { apps } : {}) });
  expect(status).toBe(201);
  return body.token;
}

async function deploy(env: string, body: Record<string, unknown> = {}): Promise<any> {
  const { status, body: res } = await t.api("POST", `/api/v1/apps/shop/environments/${env}/deploys`, body);
  expect(status, JSON.stringify(res)).toBe(202);
  return t.waitForDeploy(res.deploy.id);
}

beforeAll(async () => {
  t = await startTurnout();
  await t.writeManifest(
    "blog",
    `repo: "{repo}"\nenvironments:\n  live:\n    deploy:\n      provider: shell\n      command: ["true"]\n`,
  );
  viewer = await token("watcher", "viewer");
  scoped = await token("blog-team", "deployer", ["blog"]);
});

afterAll(async () => {
  await t?.stop();
});

describe("who am I", () => {
  it("tells each caller its role, apps and what it may do", async () => {
    const admin = await t.api("GET", "/api/v1/me");
    expect(admin.body.me).toMatchObject({
      role: "admin",
      apps: null,
      canDeploy: true,
      canAdmin: true,
      session: false,
    });
    expect((await t.api("GET", "/api/v1/me", undefined, viewer)).body.me).toMatchObject({
      name: "watcher",
      role: "viewer",
      canDeploy: false,
      canAdmin: false,
    });
    expect((await t.api("GET", "/api/v1/me", undefined, scoped)).body.me).toMatchObject({
      role: "deployer",
      apps: ["blog"],
      canDeploy: true,
    });
    expect((await t.api("GET", "/api/v1/me", undefined, "tnt_nope")).status).toBe(401);
  });
});

describe("deploys described", () => {
  it("records the commit's subject, author and date with the deploy, and the phases it went through", async () => {
    const sha = await t.repo.commit({ VERSION: "1.1.0\n" }, "Bump to 1.1.0");
    const done = await deploy("staging");
    expect(done.status).toBe("succeeded");
    const { body } = await t.api("GET", `/api/v1/deploys/${done.id}`);
    expect(body.deploy.commit).toMatchObject({ sha, subject: "Bump to 1.1.0", author: "t" });
    expect(Date.parse(body.deploy.commit.date)).not.toBeNaN();
    const phases = body.phases.map((p: { phase: string }) => p.phase);
    expect(phases).toEqual(["starting", "workspace", "deploy"]);
    const times = body.phases.map((p: { at: string }) => Date.parse(p.at));
    expect([...times].sort((a, b) => a - b)).toEqual(times);
    // Release rows carry it too (history without git).
    const releases = await t.api("GET", "/api/v1/apps/shop/environments/staging/releases");
    expect(releases.body.releases[0].deploy.commit.subject).toBe("Bump to 1.1.0");
    expect(releases.body.releases[0].deploy.startedAt).toBeTruthy();
  });
});

describe("overview", () => {
  it("shows the live release with its commit, and counts undeployed commits after a look and after a deploy", async () => {
    await deploy("production");
    await t.repo.commit({ a: "1" }, "One");
    await t.repo.commit({ b: "2" }, "Two");
    const head = await t.repo.commit({ c: "3" }, "Three");
    await t.engine.poke("shop", "poll");
    const { body } = await t.api("GET", "/api/v1/overview");
    const env = body.apps
      .find((a: any) => a.name === "shop")
      .environments.find((e: any) => e.name === "production");
    expect(env.current.commit.subject).toBe("Bump to 1.1.0");
    expect(env.current.user).toBe("admin");
    expect(env.undeployed).toMatchObject({ count: 3, truncated: false, newestSha: head });
    expect(env.fleet).toBeNull();
    // Deploying the head makes it 0 without waiting for a poll.
    await deploy("production");
    await until(
      async () => {
        const again = await t.api("GET", "/api/v1/overview");
        const e = again.body.apps
          .find((a: any) => a.name === "shop")
          .environments.find((x: any) => x.name === "production");
        return e.undeployed?.count === 0;
      },
      10_000,
      "undeployed back to 0",
    );
  });

  it("shows a token limited to some apps only those apps", async () => {
    const { body } = await t.api("GET", "/api/v1/overview", undefined, scoped);
    expect(body.apps.map((a: any) => a.name)).toEqual(["blog"]);
  });
});

describe("deploy readiness", () => {
  it("says why a deploy would be refused: the lock (forcible), and for a viewer its role", async () => {
    const free = await t.api("GET", "/api/v1/apps/shop/environments/staging/deploy-readiness");
    expect(free.body.readiness).toMatchObject({ ready: true, ref: "main", reasons: [] });
    expect(free.body.readiness.sha).toMatch(/^[0-9a-f]{40}$/);

    expect(
      (await t.api("PUT", "/api/v1/apps/shop/environments/staging/lock", { reason: "load test until 3pm" }))
        .status,
    ).toBe(200);
    const locked = await t.api("GET", "/api/v1/apps/shop/environments/staging/deploy-readiness");
    expect(locked.body.readiness.ready).toBe(false);
    expect(locked.body.readiness.reasons).toEqual([
      expect.objectContaining({
        code: "locked",
        blocking: true,
        forcible: true,
        message: "shop/staging is locked by admin: load test until 3pm",
      }),
    ]);
    await t.api("DELETE", "/api/v1/apps/shop/environments/staging/lock");

    const asViewer = await t.api(
      "GET",
      "/api/v1/apps/shop/environments/staging/deploy-readiness",
      undefined,
      viewer,
    );
    expect(asViewer.body.readiness.reasons.map((r: any) => r.code)).toEqual(["no_permission"]);
    // A ref that does not exist is an input error, in words.
    const bad = await t.api("GET", "/api/v1/apps/shop/environments/staging/deploy-readiness?ref=nope");
    expect(bad.status).toBe(422);
    expect(bad.body.error.code).toBe("E_REF_NOT_FOUND");
  });

  it("refuses a token limited to other apps", async () => {
    const res = await t.api(
      "GET",
      "/api/v1/apps/shop/environments/staging/deploy-readiness",
      undefined,
      scoped,
    );
    expect([403, 404]).toContain(res.status);
    expect(res.body.readiness).toBeUndefined();
  });
});

describe("rollback preview", () => {
  it("lists exactly the releases and commits a rollback to an earlier release undoes", async () => {
    // production: #1 (1.1.0), #2 (Three); add #3 with a fourth commit.
    await t.repo.commit({ d: "4" }, "Four");
    const third = await deploy("production");
    const previewTo1 = await t.api("GET", "/api/v1/apps/shop/environments/production/rollback-preview?to=1");
    expect(previewTo1.status).toBe(200);
    const p = previewTo1.body.preview;
    expect(p.target.deployNumber).toBe(1);
    expect(p.current.deployNumber).toBe(third.number);
    expect(p.undone.map((r: any) => r.deployNumber)).toEqual([3, 2]);
    expect(p.undone[0].commit.subject).toBe("Four");
    expect(p.commits[0].commits.map((c: any) => c.subject)).toEqual(["Four", "Three", "Two", "One"]);
    // Without `to`: the release a rollback picks by default (the one before the current).
    const byDefault = await t.api("GET", "/api/v1/apps/shop/environments/production/rollback-preview");
    expect(byDefault.body.preview.target.deployNumber).toBe(2);
    expect(byDefault.body.preview.undone.map((r: any) => r.deployNumber)).toEqual([3]);
    // And the rollback it previews does what it said.
    const rolled = await t.api("POST", "/api/v1/apps/shop/environments/production/rollback", { to: 1 });
    const finished = await t.waitForDeploy(rolled.body.deploy.id);
    expect(finished.status).toBe("succeeded");
    expect(finished.sha).toBe(p.target.sha);
    const none = await t.api("GET", "/api/v1/apps/shop/environments/production/rollback-preview?to=99");
    expect(none.status).toBe(409);
    expect(none.body.error.code).toBe("E_NO_RELEASE");
  });
});

describe("stats", () => {
  it("counts the environment's deploys per day over the last 30 days", async () => {
    const { body } = await t.api("GET", "/api/v1/apps/shop/environments/production/stats");
    expect(body.stats.days).toHaveLength(30);
    expect(body.stats.succeeded).toBe(4);
    expect(body.stats.failureRate).toBe(0);
    expect(body.stats.days.at(-1).succeeded).toBe(4);
    const week = await t.api("GET", "/api/v1/apps/shop/environments/production/stats?days=7");
    expect(week.body.stats.days).toHaveLength(7);
    expect((await t.api("GET", "/api/v1/apps/shop/environments/production/stats?days=0")).status).toBe(400);
  });
});

describe("live change events", () => {
  it("streams deploy and lock changes of the caller's apps only", async () => {
    const url = `${t.url}/api/v1/events`;
    const watching = followLog(url, t.adminToken, {
      stopWhen: (events) => events.some((e) => e.event === "change" && JSON.parse(e.data).type === "lock"),
      timeoutMs: 20_000,
    });
    const blogOnly = followLog(url, scoped, {
      stopWhen: (events) => events.some((e) => e.event === "change" && JSON.parse(e.data).app === "blog"),
      timeoutMs: 20_000,
    });
    await new Promise((r) => setTimeout(r, 300));
    await deploy("staging");
    const blog = await t.api("POST", "/api/v1/apps/blog/environments/live/deploys", {}, scoped);
    await t.waitForDeploy(blog.body.deploy.id);
    await t.api("PUT", "/api/v1/apps/shop/environments/staging/lock", { reason: "events" });
    await t.api("DELETE", "/api/v1/apps/shop/environments/staging/lock");
    const all = await watching;
    expect(all.status).toBe(200);
    expect(all.events[0]?.event).toBe("ready");
    const changes = all.events.filter((e) => e.event === "change").map((e) => JSON.parse(e.data));
    const shopStatuses = changes.filter((c) => c.type === "deploy" && c.app === "shop").map((c) => c.status);
    expect(shopStatuses).toContain("queued");
    expect(shopStatuses).toContain("succeeded");
    // In the order it happened: never back to "queued" once it ran (hints after the fact carry the state now).
    expect(shopStatuses.lastIndexOf("queued")).toBeLessThan(shopStatuses.indexOf("running"));
    expect(shopStatuses.at(-1)).toBe("succeeded");
    expect(changes).toContainEqual({ type: "lock", app: "shop", env: "staging", locked: true });
    const limited = (await blogOnly).events
      .filter((e) => e.event === "change")
      .map((e) => JSON.parse(e.data));
    expect(limited.length).toBeGreaterThan(0);
    expect(limited.every((c) => c.app === "blog")).toBe(true);
  });
});

describe("browser sign-in codes", () => {
  it("exchanges a code once for a short-lived token, and signing out revokes it", async () => {
    const issued = await t.api("POST", "/api/v1/login-codes");
    expect(issued.status).toBe(201);
    expect(issued.body.code).toMatch(/^[A-Za-z0-9_-]{32}$/);
    const exchange = () =>
      fetch(`${t.url}/api/v1/login-codes/exchange`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ code: issued.body.code }),
      });
    const first = await exchange();
    expect(first.status).toBe(201);
    const { token: session, info } = (await first.json()) as any;
    expect(info.role).toBe("admin");
    const hours = (Date.parse(info.expiresAt) - Date.now()) / 3_600_000;
    expect(hours).toBeGreaterThan(11.9);
    expect(hours).toBeLessThanOrEqual(12);
    const second = await exchange();
    expect(second.status).toBe(401);
    expect(((await second.json()) as any).error.message).toContain("invalid, used or expired");

    const me = await t.api("GET", "/api/v1/me", undefined, session);
    expect(me.body.me).toMatchObject({ session: true, role: "admin" });
    expect((await t.api("DELETE", "/api/v1/me/session", undefined, session)).status).toBe(200);
    expect((await t.api("GET", "/api/v1/me", undefined, session)).status).toBe(401);
    // A token made any other way is not revoked by "sign out".
    const notSession = await t.api("DELETE", "/api/v1/me/session", undefined, viewer);
    expect(notSession.status).toBe(409);
    expect((await t.api("GET", "/api/v1/me", undefined, viewer)).status).toBe(200);
  });

  it("gives codes to admins only", async () => {
    const res = await t.api("POST", "/api/v1/login-codes", undefined, scoped);
    expect(res.status).toBe(403);
    expect(res.body.code).toBeUndefined();
  });
});
