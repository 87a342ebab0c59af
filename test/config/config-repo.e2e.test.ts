// biome-ignore-all lint/suspicious/noExplicitAny: API responses are untyped JSON in these tests
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { resolveSettings } from "../../src/config/settings.js";
import { type RunningServer, startServer } from "../../src/server/start-server.js";
import { ensureBuilt, turnout } from "../helpers/built-cli.js";
import { makeRepo, type TestRepo } from "../helpers/git-fixtures.js";

/**
 * Configuration as code through the real server and the built CLI: the API
 * and `turnout config status` show where the configuration comes from, the
 * active commit, and the problems of apps whose manifest it breaks (those
 * apps keep their last valid version; the others take the commit).
 */
let root: string;
let home: string;
let repo: TestRepo;
let server: RunningServer;
let adminToken: string;
const printed: string[] = [];

const manifest = `repo: /srv/git/shop.git
environments:
  staging:
    branch: main
    auto_deploy: true
    deploy:
      provider: shell
      command: [echo, "{sha}"]
`;

const UNKNOWN_KEY = manifest.replace("      provider: shell\n", "      provider: shell\n      colour: red\n");

beforeAll(async () => {
  await ensureBuilt();
  root = mkdtempSync(path.join(tmpdir(), "turnout-config-repo-"));
  home = path.join(root, "home");
  mkdirSync(home);
  repo = await makeRepo(path.join(root, "config"));
  await repo.commit({ "turnout.d/shop.yaml": manifest, "README.md": "our configuration\n" }, "shop");
  const settings = resolveSettings(
    // A relative path is taken from where the server starts (the cwd argument here).
    { port: 0, dataDir: path.join(root, "data"), configRepo: "./config" },
    { PATH: process.env["PATH"], HOME: home },
    root,
  );
  server = await startServer(settings, {
    print: (line) => printed.push(line),
    configReloadMs: 600_000,
    configStartupWaitMs: 60_000,
  });
  adminToken = readFileSync(path.join(root, "data", "admin-token"), "utf8").trim();
}, 120_000);

afterAll(async () => {
  await server?.close();
  rmSync(root, { recursive: true, force: true });
});

async function getConfig(): Promise<any> {
  const response = await fetch(`${server.url}/api/v1/config`, {
    headers: { authorization: `Bearer ${adminToken}` },
  });
  expect(response.status).toBe(200);
  return response.json();
}

const cli = (...argv: string[]) =>
  turnout(["config", "status", ...argv, "--server", server.url, "--token", adminToken], {
    env: { HOME: home, XDG_CONFIG_HOME: path.join(home, ".config") },
    cwd: home,
  });

describe("a server configured from a git repository", () => {
  it("says where its configuration comes from on start", () => {
    expect(printed).toContain(`config: ${repo.path}@main ${repo.head.slice(0, 12)}`);
    expect(printed).toContain(`apps from ${repo.path}@main: shop`);
  });

  it("GET /api/v1/config gives the source, the commit and no refusal", async () => {
    const body = await getConfig();
    expect(body).toEqual({
      source: { kind: "git", url: repo.path, branch: "main" },
      revision: repo.head,
      loadedAt: expect.any(String),
      problems: [],
      lastError: null,
      loading: [],
    });
    const apps = await fetch(`${server.url}/api/v1/apps`, {
      headers: { authorization: `Bearer ${adminToken}` },
    });
    expect(((await apps.json()) as any).apps.map((a: any) => a.name)).toEqual(["shop"]);
  });

  it("takes a commit that breaks one manifest app by app, and shows the problem in the API and the CLI (exit 1)", async () => {
    const before = await getConfig();
    const kept = server.engine.config().apps.get("shop");
    const bad = await repo.commit(
      { "turnout.d/shop.yaml": UNKNOWN_KEY, "turnout.d/blog.yaml": manifest },
      "break",
    );
    expect(await server.config.refresh()).toBe(true);

    const body = await getConfig();
    expect(body.revision).toBe(bad);
    expect(body.loadedAt).not.toBe(before.loadedAt);
    expect(body.lastError).toBeNull();
    expect(body.problems).toEqual([
      {
        app: "shop",
        file: `turnout.d/shop.yaml@${bad.slice(0, 7)}`,
        line: 6,
        field: "environments.staging.deploy",
        message: 'Unrecognized key: "colour"',
      },
    ]);
    // blog.yaml of that commit is valid and taken; shop keeps its last valid version.
    expect([...server.engine.config().apps.keys()].sort()).toEqual(["blog", "shop"]);
    expect(server.engine.config().apps.get("shop")).toBe(kept);
    expect(printed).toContain(
      `config: turnout.d/shop.yaml@${bad.slice(0, 7)}:6: environments.staging.deploy: Unrecognized key: "colour"`,
    );

    const text = await cli();
    expect(text.stderr).toBe("");
    expect(text.code).toBe(1);
    const lines = text.stdout.trimEnd().split("\n");
    expect(lines[0]).toBe(`source     git ${repo.path}@main`);
    expect(lines[1]).toBe(`revision   ${bad}`);
    expect(lines[2]).toMatch(/^loaded at {2}\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ$/);
    expect(lines[3]).toBe("problems   1");
    expect(lines[4]).toBe(
      `  turnout.d/shop.yaml@${bad.slice(0, 7)}:6 environments.staging.deploy: Unrecognized key: "colour"`,
    );
    expect(lines).toHaveLength(5);

    const json = await cli("--json");
    expect(json.code).toBe(1);
    expect(JSON.parse(json.stdout)).toEqual(body);
  });

  it("takes the fix, and the problem is gone (exit 0)", async () => {
    const fixed = await repo.commit({ "turnout.d/shop.yaml": manifest }, "fix");
    expect(await server.config.refresh()).toBe(true);
    const body = await getConfig();
    expect(body).toMatchObject({ revision: fixed, problems: [], lastError: null });
    expect([...server.engine.config().apps.keys()].sort()).toEqual(["blog", "shop"]);

    const text = await cli();
    expect(text.code).toBe(0);
    expect(text.stdout).toContain("problems   none");
    expect(text.stdout).toContain(`revision   ${fixed}`);
  });
});

describe("a configuration repository whose head is invalid at start", () => {
  it("starts without the invalid app, reports it, and the CLI exits 1", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "turnout-config-repo-bad-"));
    const badRepo = await makeRepo(path.join(dir, "config"));
    const bad = await badRepo.commit({ "shop.yaml": "repo: [\n", "blog.yaml": manifest });
    const lines: string[] = [];
    const settings = resolveSettings(
      { port: 0, dataDir: path.join(dir, "data") },
      { PATH: process.env["PATH"], HOME: home, TURNOUT_CONFIG_REPO: badRepo.path, TURNOUT_CONFIG_POLL: "1h" },
      dir,
    );
    const other = await startServer(settings, {
      print: (line) => lines.push(line),
      configStartupWaitMs: 60_000,
    });
    try {
      expect([...other.config.current().apps.keys()]).toEqual(["blog"]);
      expect(lines).toContain(`config: ${badRepo.path}@main ${bad.slice(0, 12)}`);
      expect(lines).toContain(`apps from ${badRepo.path}@main: blog`);
      expect(lines.some((l) => l.startsWith(`config: shop.yaml@${bad.slice(0, 7)}:`))).toBe(true);

      const token = readFileSync(path.join(dir, "data", "admin-token"), "utf8").trim();
      const result = await turnout(["config", "status", "--server", other.url, "--token", token], {
        env: { HOME: home, XDG_CONFIG_HOME: path.join(home, ".config") },
        cwd: home,
      });
      expect(result.code).toBe(1);
      expect(result.stdout).toContain(`revision   ${bad}\n`);
      expect(result.stdout).toContain("problems   1\n");
      expect(result.stdout).toContain(`  shop.yaml@${bad.slice(0, 7)}:`);
    } finally {
      await other.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
