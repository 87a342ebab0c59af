import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { resolveSettings } from "../../src/config/settings.js";
import { environmentRevision } from "../../src/domain/app-revision.js";
import { type RunningServer, startServer } from "../../src/server/start-server.js";
import type { Store } from "../../src/store/store.js";
import { makeRepo } from "../helpers/git-fixtures.js";
import { startTurnout, type TestTurnout } from "../helpers/turnout.js";
import { until } from "../helpers/wait.js";

/**
 * A release's identity covers only what that app's release depends on:
 * editing one app's manifest (or another environment of the same app) never
 * makes another app's releases look different, nor redeploys them.
 */
const manifest = (greeting: string, extra = "") => `repo: "{repo}"
poll_interval: 1h
${extra}
environments:
  staging:
    auto_deploy: true
    deploy:
      provider: shell
      script: echo "${greeting} staging $(cat VERSION)"
  production:
    auto_deploy: true
    deploy:
      provider: shell
      script: echo "${greeting} production $(cat VERSION)"
`;

async function deploysOf(store: Store, app: string, env: string) {
  return (await store.deploys.list({ app, env, limit: 100 })).reverse();
}

async function settle(store: Store) {
  await until(
    async () =>
      (await store.deploys.list({ limit: 100 })).every((d) =>
        ["succeeded", "failed", "cancelled"].includes(d.status),
      ),
    20_000,
    "deploys finished",
  );
}

describe("per-app revisions", () => {
  let t: TestTurnout;
  afterEach(async () => t?.stop());

  it("editing app A redeploys A's changed environment only; app B keeps its deploys and fingerprints", async () => {
    t = await startTurnout({ manifest: manifest("hello") });
    await t.writeManifest("blog", manifest("hi"));
    await t.engine.poke("shop", "poll");
    await t.engine.poke("blog", "poll");
    await settle(t.store);
    const blogBefore = (await t.store.releases.current("blog", "staging"))!;
    const shopProductionBefore = (await t.store.releases.current("shop", "production"))!;
    expect(blogBefore.appRevision).toBe(environmentRevision(t.engine.config().apps.get("blog")!, "staging"));

    // A setting of shop's staging that matters.
    await t.writeManifest("shop", manifest("hello").replace("hello staging", "bonjour staging"));
    await until(async () => (await deploysOf(t.store, "shop", "staging")).length === 2, 10_000, "redeploy");
    await settle(t.store);
    const [first, second] = await deploysOf(t.store, "shop", "staging");
    expect(second).toMatchObject({
      user: "turnout (config)",
      trigger: "auto",
      sha: first!.sha,
      status: "succeeded",
    });
    expect(second!.appRevision).not.toBe(first!.appRevision);
    const log = (await t.store.logs.read(second!.id, 0)).chunks.map((c) => c.text).join("");
    expect(log).toContain("bonjour staging 1.0.0");

    // Nothing else moves, whatever looks and reconciles run.
    await t.engine.poke("blog", "poll");
    await t.engine.poke("shop", "poll");
    await t.engine.reconcileAutoDeploys();
    await t.engine.reconcileAutoDeploys();
    expect(await deploysOf(t.store, "shop", "staging")).toHaveLength(2);
    expect(await deploysOf(t.store, "shop", "production")).toHaveLength(1);
    expect(await deploysOf(t.store, "blog", "staging")).toHaveLength(1);
    expect(await deploysOf(t.store, "blog", "production")).toHaveLength(1);
    // The global revision moved, B's identity did not: redeploying B's
    // commit by hand installs "the same thing", by fingerprint too.
    expect(t.engine.config().revision).not.toBe(blogBefore.configRevision);
    const again = await t.api("POST", "/api/v1/apps/blog/environments/staging/deploys", {});
    await t.waitForDeploy(again.body.deploy.id);
    const blogAfter = (await t.store.releases.current("blog", "staging"))!;
    expect(blogAfter.id).not.toBe(blogBefore.id);
    expect(blogAfter.fingerprint).toBe(blogBefore.fingerprint);
    expect(blogAfter.appRevision).toBe(blogBefore.appRevision);
    const history = await t.api("GET", "/api/v1/apps/blog/environments/staging/releases");
    expect(history.body.releases[0]).toMatchObject({ configChanged: false, changes: [] });
    // And shop's production, whose block did not change, neither.
    const shopProduction = await t.api("POST", "/api/v1/apps/shop/environments/production/deploys", {});
    await t.waitForDeploy(shopProduction.body.deploy.id);
    expect((await t.store.releases.current("shop", "production"))!.fingerprint).toBe(
      shopProductionBefore.fingerprint,
    );

    // Settings no release depends on change nothing.
    await t.writeManifest(
      "shop",
      manifest("hello", "github: { repository: acme/shop }")
        .replace("hello staging", "bonjour staging")
        .replace("poll_interval: 1h", "poll_interval: 2h"),
    );
    expect(t.engine.config().apps.get("shop")!.pollIntervalMs).toBe(7_200_000);
    await t.engine.reconcileAutoDeploys();
    await settle(t.store);
    expect(await deploysOf(t.store, "shop", "staging")).toHaveLength(2);
  });
});

describe("per-app revisions with a configuration repository", () => {
  let root: string;
  let server: RunningServer | undefined;
  afterEach(async () => {
    await server?.close();
    rmSync(root, { recursive: true, force: true });
  });

  it("a commit touching only app A creates no deploy for app B and leaves B's fingerprint unchanged", async () => {
    root = mkdtempSync(path.join(tmpdir(), "turnout-app-revision-"));
    const code = await makeRepo(path.join(root, "code"));
    await code.commit({ VERSION: "1\n" }, "code");
    const config = await makeRepo(path.join(root, "config"));
    const of = (greeting: string) => manifest(greeting).replaceAll("{repo}", code.path);
    const rev1 = await config.commit(
      { "turnout.d/shop.yaml": of("hello"), "turnout.d/blog.yaml": of("hi") },
      "both",
    );
    const settings = resolveSettings(
      { port: 0, dataDir: path.join(root, "data"), configRepo: config.path },
      { PATH: process.env["PATH"], HOME: root, TURNOUT_CONFIG_POLL: "1h" },
      root,
    );
    server = await startServer(settings, { print: () => undefined, polling: false });
    const { store, engine } = server;
    await engine.poke("shop", "poll");
    await engine.poke("blog", "poll");
    await settle(store);
    const blogBefore = (await store.releases.current("blog", "staging"))!;
    expect(blogBefore.configRevision).toBe(rev1);

    const rev2 = await config.commit({ "turnout.d/shop.yaml": of("bonjour") }, "shop says bonjour");
    expect(await server.config.refresh()).toBe(true);
    await until(
      async () => (await deploysOf(store, "shop", "staging")).length === 2,
      15_000,
      "shop redeploy",
    );
    await until(
      async () => (await deploysOf(store, "shop", "production")).length === 2,
      15_000,
      "shop redeploy",
    );
    await settle(store);
    expect((await deploysOf(store, "shop", "staging"))[1]).toMatchObject({
      configRevision: rev2,
      status: "succeeded",
    });

    await engine.reconcileAutoDeploys();
    await engine.poke("blog", "poll");
    expect(await deploysOf(store, "blog", "staging")).toHaveLength(1);
    expect(await deploysOf(store, "blog", "production")).toHaveLength(1);
    expect(environmentRevision(engine.config().apps.get("blog")!, "staging")).toBe(blogBefore.appRevision);
    const token = (await store.tokens.create({ name: "ci", role: "deployer", apps: null, createdBy: "test" }))
      .token;
    const response = await fetch(`${server.url}/api/v1/apps/blog/environments/staging/deploys`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: "{}",
    });
    expect(response.status).toBe(202);
    await settle(store);
    const blogAfter = (await store.releases.current("blog", "staging"))!;
    expect(blogAfter.configRevision).toBe(rev2);
    expect(blogAfter.fingerprint).toBe(blogBefore.fingerprint);
  });
});
