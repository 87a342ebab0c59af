import { readFileSync, writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { resolveSettings, type ServerSettings } from "../../src/config/settings.js";
import type { Engine } from "../../src/engine/engine.js";
import { type RunningServer, type StartOptions, startServer } from "../../src/server/start-server.js";
import type { Store } from "../../src/store/store.js";
import { ensureBuilt } from "./built-cli.js";
import { type Backend, createTestDatabase, type TestDatabase } from "./databases.js";
import { makeRepo, type TestRepo } from "./git-fixtures.js";

/**
 * The whole server, in-process, on a loopback port: real store (SQLite by
 * default, or the machine's PostgreSQL), real git repository, real shell
 * commands. The app `shop` has `staging` (a script) and `production` (argv).
 */
export interface TestTurnout {
  url: string;
  adminToken: string;
  store: Store;
  engine: Engine;
  dataDir: string;
  configDir: string;
  repo: TestRepo;
  settings: ServerSettings;
  server: RunningServer;
  /** Writes a manifest into the config directory and reloads the configuration. */
  writeManifest(app: string, yaml: string): Promise<void>;
  /** Authenticated JSON request against the API. */
  api(
    method: string,
    urlPath: string,
    body?: unknown,
    token?: string,
  ): Promise<{ status: number; body: any; headers: Headers }>;
  /** Polls a deploy until it is finished. */
  waitForDeploy(id: number, timeoutMs?: number): Promise<any>;
  stop(): Promise<void>;
}

export interface TestTurnoutOptions {
  backend?: Backend;
  /** Manifest of `shop`; `{repo}` is replaced by the test repository's path. */
  manifest?: string;
  leaseMs?: number;
  concurrency?: number;
  environment?: Record<string, string>;
  /** Let the poller look at repositories on its own (default false: tests poke). */
  polling?: boolean;
  /** Fleet deploys: how long to wait for a disconnected agent. */
  fleetReconnectGraceMs?: number;
  /** The engine's clock for deploy windows and min_interval (default: the system's). */
  clock?: () => Date;
  /** A settings file (YAML) for the server, e.g. its `notify:` channels. */
  settingsFile?: string;
  /** Notification dispatcher tuning. */
  notify?: StartOptions["notify"];
  /** A database made by the test (PostgreSQL), instead of one of its own. */
  database?: TestDatabase;
  /** Fleet prefetch read access (a test's own, to watch or break it). */
  prefetchGrants?: StartOptions["prefetchGrants"];
  /** Reuse this data directory and database (a restart of an earlier server); not removed by stop(). */
  reuse?: { root: string; database?: TestDatabase };
}

export const DEFAULT_MANIFEST = `repo: "{repo}"
environments:
  staging:
    branch: main
    deploy:
      provider: shell
      script: |
        echo "deploying $TURNOUT_APP/$TURNOUT_ENV at $TURNOUT_SHA"
        cat VERSION
        echo "done"
      timeout: 2m
  production:
    branch: main
    deploy:
      provider: shell
      command: [bash, deploy.sh, "{env}", "{sha}", "{ref}"]
      timeout: 2m
`;

/** A manifest for `shop` whose only environment, `staging`, runs `script` (one command per line). */
export function stagingScript(script: string): string {
  const lines = script
    .trim()
    .split("\n")
    .map((line) => `        ${line}`);
  return `repo: "{repo}"\nenvironments:\n  staging:\n    deploy:\n      provider: shell\n      script: |\n${lines.join("\n")}\n`;
}

export async function startTurnout(options: TestTurnoutOptions = {}): Promise<TestTurnout> {
  // Manifests are parsed in a worker thread, which runs the built dist/ (it cannot load .ts).
  await ensureBuilt();
  const root = options.reuse?.root ?? (await mkdtemp(path.join(tmpdir(), "turnout-test-")));
  const dataDir = path.join(root, "data");
  const configDir = path.join(root, "turnout.d");
  // `git init` again on a reused repository changes nothing in it.
  const repo = await makeRepo(path.join(root, "origin"));
  if (!options.reuse)
    await repo.commit(
      {
        VERSION: "1.0.0\n",
        "deploy.sh": 'set -eu\necho "deploy.sh env=$1 sha=$2 ref=$3"\ncat VERSION\n',
      },
      "first",
    );
  let database: TestDatabase | undefined = options.reuse?.database ?? options.database;
  if (!database && options.backend === "postgres") database = await createTestDatabase("postgres");
  const env: Record<string, string | undefined> = {
    PATH: process.env["PATH"],
    HOME: process.env["HOME"],
    // stop() ends a test at once: a deploy still running is interrupted, not waited for.
    TURNOUT_SHUTDOWN_GRACE: "0s",
    ...options.environment,
    TURNOUT_LEASE: options.leaseMs !== undefined ? `${options.leaseMs}ms` : undefined,
    TURNOUT_KILL_GRACE: "2s",
    // Tests deploy right after start: wait for every manifest, however loaded the machine.
    TURNOUT_CONFIG_STARTUP_WAIT: "60s",
    ...(options.settingsFile !== undefined
      ? { TURNOUT_SETTINGS_FILE: writeSettings(root, options.settingsFile) }
      : {}),
  };
  const settings = resolveSettings(
    {
      port: 0,
      dataDir,
      configDir,
      ...(database?.url ? { databaseUrl: database.url } : {}),
      ...(options.concurrency ? { concurrency: options.concurrency } : {}),
    },
    env,
    root,
  );
  const { mkdirSync } = await import("node:fs");
  mkdirSync(configDir, { recursive: true });
  writeFileSync(
    path.join(configDir, "shop.yaml"),
    (options.manifest ?? DEFAULT_MANIFEST).replaceAll("{repo}", repo.path),
  );

  const server = await startServer(settings, {
    print: process.env["TURNOUT_TEST_PRINT"] ? (line: string) => console.log(line) : () => undefined,
    configReloadMs: 60_000,
    polling: options.polling === true,
    fleetReconnectGraceMs: options.fleetReconnectGraceMs ?? 3000,
    ...(options.clock ? { clock: options.clock } : {}),
    ...(options.notify ? { notify: options.notify } : {}),
    ...(options.prefetchGrants ? { prefetchGrants: options.prefetchGrants } : {}),
  });
  const adminToken = readFileSync(path.join(dataDir, "admin-token"), "utf8").trim();

  const api: TestTurnout["api"] = async (method, urlPath, body, token = adminToken) => {
    const response = await fetch(server.url + urlPath, {
      method,
      headers: {
        authorization: `Bearer ${token}`,
        ...(body !== undefined ? { "content-type": "application/json" } : {}),
      },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    const text = await response.text();
    let parsed: unknown = text;
    try {
      parsed = JSON.parse(text);
    } catch {
      // not JSON
    }
    return { status: response.status, body: parsed, headers: response.headers };
  };

  return {
    url: server.url,
    adminToken,
    store: server.store,
    engine: server.engine,
    dataDir,
    configDir,
    repo,
    settings,
    server,
    async writeManifest(app, yaml) {
      writeFileSync(path.join(configDir, `${app}.yaml`), yaml.replaceAll("{repo}", repo.path));
      await server.config.refresh();
    },
    api,
    async waitForDeploy(id, timeoutMs = 30_000) {
      const until = Date.now() + timeoutMs;
      for (;;) {
        const deploy = await server.store.deploys.get(id);
        if (["succeeded", "failed", "cancelled"].includes(deploy.status)) return deploy;
        if (Date.now() > until) throw new Error(`deploy ${id} still ${deploy.status} after ${timeoutMs} ms`);
        await new Promise((r) => setTimeout(r, 25));
      }
    },
    async stop() {
      await server.close();
      if (options.reuse) return;
      await database?.drop();
      await rm(root, { recursive: true, force: true });
    },
  };
}

function writeSettings(root: string, yaml: string): string {
  const file = path.join(root, "settings.yaml");
  writeFileSync(file, yaml);
  return file;
}
