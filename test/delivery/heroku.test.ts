import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runInProcess } from "../cli/helpers.js";
import { BACKENDS } from "../helpers/databases.js";
import { type FakeHeroku, startFakeHeroku } from "../helpers/fake-heroku.js";
import { startTurnout, type TestTurnout } from "../helpers/turnout.js";

const KEY = "heroku-api-key-0123456789abcdef";
const WRONG_KEY = "heroku-wrong-key-fedcba9876543210";

/**
 * The Heroku provider end to end: the real server deploys through a local
 * stand-in of the Platform API (test/helpers/fake-heroku.ts) that checks
 * every request; deploys, the streamed build output, rollbacks through
 * Heroku's release rollback, a failed build and a refused key.
 */
describe.each(BACKENDS)("heroku provider (%s)", (backend) => {
  let t: TestTurnout;
  let heroku: FakeHeroku;

  const cli = (args: string[]) => runInProcess([...args, "--server", t.url, "--token", t.adminToken]);
  const logOf = async (id: number) => (await t.store.logs.read(id, 0)).chunks.map((c) => c.text).join("");
  const latest = async (env: string) => (await t.store.deploys.list({ app: "shop", env, limit: 1 }))[0]!;

  beforeAll(async () => {
    heroku = await startFakeHeroku({ app: "shop-prod", apiKey: KEY });
    t = await startTurnout({
      backend,
      environment: { HEROKU_API_KEY: KEY, HEROKU_OTHER_KEY: WRONG_KEY },
      manifest: `repo: "{repo}"
environments:
  production:
    deploy:
      provider: heroku
      app: shop-prod
      api_key_env: HEROKU_API_KEY
      api_url: ${heroku.url}
      timeout: 2m
  staging:
    deploy:
      provider: heroku
      app: shop-prod
      api_key_env: HEROKU_OTHER_KEY
      api_url: ${heroku.url}
`,
    });
  }, 120_000);

  afterAll(async () => {
    await t?.stop();
    await heroku?.close();
  });

  it("builds the commit's source through the Platform API, streams the build output, and waits for the release", async () => {
    const first = await cli(["deploy", "shop", "production", "--follow"]);
    expect(first.code, first.stderr).toBe(0);
    const deploy = await latest("production");
    const log = await logOf(deploy.id);
    expect(log).toContain("-----> Building on the Heroku-24 stack");
    expect(log).toContain(`-----> Fetching source ${deploy.sha.slice(0, 7)}`);
    expect(log).toContain("==> Heroku release v1");
    expect(first.stdout + first.stderr).toContain("Launching...");

    // What Heroku received, in order, and with what.
    const calls = heroku.requests.map((r) => `${r.method} ${r.path.replace(/[0-9a-f-]{36}/g, ":id")}`);
    expect(calls).toEqual([
      "POST /apps/shop-prod/sources",
      "PUT /source-blobs/:id",
      "POST /apps/shop-prod/builds",
      "GET /streams/:id",
      "GET /apps/shop-prod/builds/:id",
      "GET /apps/shop-prod/releases/:id",
    ]);
    const build = heroku.requests[2]!;
    const body = JSON.parse(build.body.toString("utf8"));
    expect(body.source_blob.version).toBe(deploy.sha);
    expect(body.source_blob.url).toMatch(/\/source-blobs\/[0-9a-f-]{36}$/);
    expect(build.headers["content-type"]).toBe("application/json");
    const [upload] = [...heroku.uploads.values()];
    expect(upload!.get("VERSION")).toBe("1.0.0\n");
    expect(upload!.has("deploy.sh")).toBe(true);
    expect(heroku.problems).toEqual([]);

    // The key stays out of the log, the release and the environment's API.
    const release = (await t.api("GET", "/api/v1/apps/shop/environments/production/releases")).body
      .releases[0];
    expect(release.providerRelease).toBe(heroku.releases[0]!.id);
    expect(JSON.stringify(release) + log).not.toContain(KEY);
    expect(
      JSON.stringify((await t.api("GET", "/api/v1/apps/shop/environments/production")).body),
    ).not.toContain(KEY);
  }, 120_000);

  it("rolls back through Heroku's release rollback, and fails a deploy whose build fails", async () => {
    await t.repo.commit({ VERSION: "2.0.0\n" }, "second");
    expect((await cli(["deploy", "shop", "production", "--follow"])).code).toBe(0);
    expect(heroku.releases.map((r) => r.version)).toEqual([1, 2]);
    const before = heroku.requests.length;

    const rollback = await cli(["rollback", "shop", "production", "--follow"]);
    expect(rollback.code, rollback.stderr).toBe(0);
    const sent = heroku.requests.slice(before);
    expect(sent.map((r) => `${r.method} ${r.path}`)).toEqual(["POST /apps/shop-prod/releases"]);
    expect(JSON.parse(sent[0]!.body.toString("utf8"))).toEqual({ release: heroku.releases[0]!.id });
    expect(heroku.releases.at(-1)).toMatchObject({ version: 3, description: "Rollback to v1" });
    const current = await t.store.releases.current("shop", "production");
    expect(current!.providerRelease).toBe(heroku.releases[2]!.id);
    expect(await logOf((await latest("production")).id)).toContain("==> Heroku release v3");

    heroku.failNextBuild();
    const failed = await cli(["deploy", "shop", "production", "--follow"]);
    expect(failed.code).toBe(1);
    const deploy = await latest("production");
    expect(deploy).toMatchObject({ status: "failed", errorCode: "E_PROVIDER_FAILED" });
    expect(await logOf(deploy.id)).toContain("Push rejected, failed to compile app.");
    // The environment still runs the rollback's release.
    expect((await t.store.releases.current("shop", "production"))!.id).toBe(current!.id);
    expect(heroku.problems).toEqual([]);
  }, 120_000);

  it("fails with Heroku's message, not the key, when Heroku refuses the key", async () => {
    const result = await cli(["deploy", "shop", "staging", "--follow"]);
    expect(result.code).toBe(1);
    const deploy = await latest("staging");
    expect(deploy).toMatchObject({ status: "failed", errorCode: "E_PROVIDER_FAILED" });
    expect(deploy.errorMessage).toContain("Invalid credentials provided.");
    const log = await logOf(deploy.id);
    expect(log + JSON.stringify(deploy)).not.toContain(WRONG_KEY);
    expect(heroku.problems.at(-1)).toBe("Invalid credentials provided.");
  }, 60_000);
});
