// biome-ignore-all lint/suspicious/noExplicitAny: API responses are untyped JSON in these tests
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { manifestParsesInThisThread } from "../../src/config/manifest-loader.js";
import { resolveSettings } from "../../src/config/settings.js";
import { type RunningServer, startServer } from "../../src/server/start-server.js";
import { withGitLog } from "../git/git-spy.js";
import { ensureBuilt, turnout } from "../helpers/built-cli.js";
import { makeRepo, type TestRepo } from "../helpers/git-fixtures.js";
import { until } from "../helpers/wait.js";
import { aliasBomb, manyKeys } from "./hostile-manifests.js";

/**
 * One bad manifest affects only its own app, through the real server: an
 * alias bomb present at start, a 2 MB manifest, hostile repository URLs.
 * The server starts, the other apps deploy, the bad app's problem is shown
 * with file and line (API, `turnout config status`, and a deploy of it),
 * and manifests are parsed only in the worker thread, so /healthz answers
 * while one is being parsed.
 */
let root: string;
let configDir: string;
let repo: TestRepo;
let server: RunningServer;
let adminToken: string;
const printed: string[] = [];
// The parser's worker waits while hold[0] is 0: parses in progress can be observed.
const hold = new Int32Array(new SharedArrayBuffer(4));
// Parses on this thread before this file's server started (other files may share this process).
let parsesBefore = 0;

const manifest = (repoUrl: string) => `repo: ${JSON.stringify(repoUrl)}
environments:
  staging:
    deploy:
      provider: shell
      command: [cat, VERSION]
`;

beforeAll(async () => {
  await ensureBuilt();
  parsesBefore = manifestParsesInThisThread();
  root = mkdtempSync(path.join(tmpdir(), "turnout-manifest-isolation-"));
  configDir = path.join(root, "turnout.d");
  mkdirSync(configDir);
  repo = await makeRepo(path.join(root, "origin"));
  await repo.commit({ VERSION: "1.0.0\n" }, "first");
  writeFileSync(path.join(configDir, "shop.yaml"), manifest(repo.path));
  writeFileSync(path.join(configDir, "bomb.yaml"), aliasBomb(manifest(repo.path)));
  const settings = resolveSettings(
    { port: 0, dataDir: path.join(root, "data"), configDir },
    { PATH: process.env["PATH"], HOME: root },
    root,
  );
  Atomics.store(hold, 0, 1); // parse freely at start
  server = await startServer(settings, {
    print: (line) => printed.push(line),
    configReloadMs: 600_000,
    polling: false,
    configStartupWaitMs: 60_000,
    manifestParser: { hold },
  });
  adminToken = readFileSync(path.join(root, "data", "admin-token"), "utf8").trim();
}, 180_000);

afterAll(async () => {
  Atomics.store(hold, 0, 1);
  Atomics.notify(hold, 0);
  await server?.close();
  rmSync(root, { recursive: true, force: true });
});

async function api(method: string, urlPath: string, body?: unknown): Promise<{ status: number; body: any }> {
  const response = await fetch(server.url + urlPath, {
    method,
    headers: {
      authorization: `Bearer ${adminToken}`,
      ...(body !== undefined ? { "content-type": "application/json" } : {}),
    },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  return { status: response.status, body: await response.json() };
}

const bombFile = () => path.join(configDir, "bomb.yaml");
const cli = (...argv: string[]) =>
  turnout([...argv, "--server", server.url, "--token", adminToken], {
    env: { HOME: root, XDG_CONFIG_HOME: path.join(root, ".config") },
    cwd: root,
  });

describe("an alias bomb in one manifest", () => {
  it("does not stop the server from starting, and the other app deploys", async () => {
    expect(printed).toContain(`apps from ${configDir}: shop`);
    const queued = await api("POST", "/api/v1/apps/shop/environments/staging/deploys", {});
    expect(queued.status).toBe(202);
    await until(
      async () =>
        (await api("GET", `/api/v1/deploys/${queued.body.deploy.id}`)).body.deploy.status === "succeeded",
      30_000,
      "the deploy of shop",
    );
  });

  it("is reported with file and line in /api/v1/config and `turnout config status`, which exits 1", async () => {
    const config = await api("GET", "/api/v1/config");
    expect(config.body.problems).toEqual([
      {
        app: "bomb",
        file: bombFile(),
        line: 11,
        field: "(yaml)",
        message: expect.stringContaining("aliases expand to more than 10000 nodes"),
      },
    ]);
    expect(printed).toContain(`config: ${bombFile()}:11: (yaml): ${config.body.problems[0].message}`);
    const status = await cli("config", "status");
    expect(status.code).toBe(1);
    expect(status.stdout).toContain(`problems   1\n  ${bombFile()}:11 (yaml): aliases expand to more than`);
  });

  it("a deploy of the bad app says what is wrong with its manifest, not that the app does not exist", async () => {
    const refused = await api("POST", "/api/v1/apps/bomb/environments/staging/deploys", {});
    expect(refused.status).toBe(409);
    expect(refused.body.error).toMatchObject({
      code: "E_INVALID_MANIFEST",
      message: expect.stringContaining(`${bombFile()}:11: (yaml): aliases expand`),
      details: { app: "bomb", problems: [expect.objectContaining({ file: bombFile(), line: 11 })] },
    });
    const deploy = await cli("deploy", "bomb", "staging");
    expect(deploy.code).toBe(1);
    expect(deploy.stderr).toContain(`${bombFile()}:11: (yaml): aliases expand`);
    expect(deploy.stderr).toContain("(E_INVALID_MANIFEST)");
    // A name no manifest uses is still simply not found.
    expect((await api("POST", "/api/v1/apps/nobody/environments/staging/deploys", {})).body.error.code).toBe(
      "E_NOT_FOUND",
    );
  });
});

describe("parsing stays off the request path", () => {
  it("/healthz and the API answer while a manifest is being parsed; its app is 'loading' until then", async () => {
    Atomics.store(hold, 0, 0); // the worker now waits before each parse
    const release = () => {
      Atomics.store(hold, 0, 1);
      Atomics.notify(hold, 0);
    };
    writeFileSync(path.join(configDir, "big.yaml"), manyKeys(manifest(repo.path), 5_000));
    const reload = server.config.refresh();
    try {
      await until(
        () => server.config.status().loading.length > 0,
        30_000,
        "the manifest reaching the parser",
      );

      const health = await fetch(`${server.url}/healthz`);
      expect(health.status).toBe(200);
      const config = await api("GET", "/api/v1/config");
      expect(config.body.loading).toEqual([{ app: "big", file: path.join(configDir, "big.yaml") }]);
      const early = await api("POST", "/api/v1/apps/big/environments/staging/deploys", {});
      expect(early.status).toBe(503);
      expect(early.body.error.code).toBe("E_UNAVAILABLE");
      // The apps already served are served all the while.
      expect((await api("GET", "/api/v1/apps/shop")).status).toBe(200);
    } finally {
      release();
    }
    expect(await reload).toBe(true);
    expect(server.config.status().loading).toEqual([]);
    expect(server.config.current().apps.get("big")?.environments["staging"]?.deploy.env["KEY_4999"]).toBe(
      "value-4999",
    );
  });

  it("never parses on the main thread, and an unchanged directory is not parsed again", async () => {
    const parses = server.config.stats().parses;
    expect(parses).toBeGreaterThanOrEqual(3); // shop, bomb, big: each once, in the worker
    expect(manifestParsesInThisThread()).toBe(parsesBefore);
    expect(await server.config.refresh()).toBe(false);
    expect(await server.config.refresh()).toBe(false);
    expect(server.config.stats().parses).toBe(parses);
  });

  it("a 2 MB manifest with 20,000 keys is refused by its size, unread; the others are unaffected", async () => {
    const before = server.config.stats();
    writeFileSync(path.join(configDir, "huge.yaml"), manyKeys(manifest(repo.path), 20_000, 80));
    expect(await server.config.refresh()).toBe(true);
    expect(server.config.stats().parses).toBe(before.parses);
    const problems = (await api("GET", "/api/v1/config")).body.problems;
    expect(problems).toContainEqual({
      app: "huge",
      file: path.join(configDir, "huge.yaml"),
      line: null,
      field: "(file)",
      message: expect.stringMatching(/^is 2\.\d MiB; manifests are limited to 256 KiB$/),
    });
    expect((await fetch(`${server.url}/healthz`)).status).toBe(200);
    expect([...server.config.current().apps.keys()].sort()).toEqual(["big", "shop"]);
  });
});

describe("repository URLs", () => {
  const marker = () => path.join(root, "pwned");
  const hostile: Array<[string, string, string]> = [
    ["upload", manifest(`--upload-pack=touch ${path.join(tmpdir(), "x")}`), "repo"],
    ["ext", manifest(`ext::sh -c touch% ${path.join(tmpdir(), "x")}`), "repo"],
    ["fd", manifest("fd::17"), "repo"],
    ["relative", manifest("../origin"), "repo"],
    [
      "multi",
      `components:
  web: { repo: "ext::sh -c touch% ${path.join(tmpdir(), "x")}" }
environments:
  staging:
    deploy: { provider: shell, command: [echo] }
`,
      "components.web.repo",
    ],
  ];

  it("a hostile URL is refused at load, naming the field; a deploy runs no git at all", async () => {
    for (const [app, text] of hostile) {
      writeFileSync(path.join(configDir, `${app}.yaml`), text.replaceAll(path.join(tmpdir(), "x"), marker()));
    }
    await server.config.refresh();
    const problems = (await api("GET", "/api/v1/config")).body.problems;
    for (const [app, , field] of hostile) {
      expect(problems, app).toContainEqual(
        expect.objectContaining({ app, file: path.join(configDir, `${app}.yaml`), field }),
      );
      expect(server.config.current().apps.has(app)).toBe(false);
    }
    const calls = await withGitLog(async () => {
      for (const [app, , field] of hostile) {
        const refused = await api("POST", `/api/v1/apps/${app}/environments/staging/deploys`, {});
        expect(refused.status, app).toBe(409);
        expect(refused.body.error.code).toBe("E_INVALID_MANIFEST");
        expect(refused.body.error.message).toContain(`: ${field}: `);
      }
    });
    expect(calls).toEqual([]);
    expect(existsSync(marker())).toBe(false);
  });
});
