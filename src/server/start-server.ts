import { mkdirSync } from "node:fs";
import type { AddressInfo } from "node:net";
import path from "node:path";
import type { ConfigProvider } from "../config/config-provider.js";
import { DirConfigSource } from "../config/dir-config-source.js";
import type { ServerSettings } from "../config/settings.js";
import { Engine } from "../engine/engine.js";
import { GitMirrors } from "../git/mirrors.js";
import { buildHttpApp } from "../http/app.js";
import { Store } from "../store/store.js";
import { bootstrapAdminToken } from "./admin-token.js";
import { lockDataDir } from "./data-dir-lock.js";
import { ensureDemo } from "./demo.js";
import { VERSION } from "./version.js";

export interface RunningServer {
  url: string;
  port: number;
  store: Store;
  engine: Engine;
  config: ConfigProvider;
  /** Set only on the very first start, when the admin token was created. */
  createdAdminToken: string | undefined;
  close(): Promise<void>;
}

export interface StartOptions {
  /** Where the banner and warnings go; default stdout/stderr. */
  print?: (line: string) => void;
  /** How often the configuration directory is re-read. */
  configReloadMs?: number;
}

/** Variables a deploy command inherits from the server; everything else stays out. */
const PASSED_THROUGH = ["PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TZ", "TMPDIR", "SSH_AUTH_SOCK"];

/**
 * The composition root of `turnout server`: settings → store → configuration
 * → git → engine → HTTP. Nothing here decides anything; it wires and starts.
 */
export async function startServer(
  settings: ServerSettings,
  options: StartOptions = {},
): Promise<RunningServer> {
  const print = options.print ?? ((line: string) => console.log(line));
  mkdirSync(settings.dataDir, { recursive: true, mode: 0o700 });
  const unlock = lockDataDir(settings.dataDir);
  const cleanups: (() => Promise<void> | void)[] = [unlock];
  try {
    if (settings.demo && ensureDemo(settings.dataDir, settings.configDir).created) {
      print(`demo: created the app 'demo' in ${settings.configDir}`);
    }
    const store = await Store.open({
      url: settings.databaseUrl,
      sqliteFile: path.join(settings.dataDir, "turnout.db"),
    });
    cleanups.unshift(() => store.close());
    const createdAdminToken = await bootstrapAdminToken(store, settings.dataDir);

    const config = new DirConfigSource(settings.configDir, {
      defaultTimeoutMs: settings.defaultTimeoutMs,
      defaultIdleTimeoutMs: settings.defaultIdleTimeoutMs,
      environment: settings.environment,
      hostedReposDir: path.join(settings.dataDir, "hosted"),
    });
    const reload = setInterval(() => {
      config.refresh().then(
        (changed) => changed && reportProblems(config, print),
        (error: Error) => print(`config: reload failed: ${error.message}`),
      );
    }, options.configReloadMs ?? 3000);
    cleanups.unshift(() => clearInterval(reload));

    const baseEnv: Record<string, string> = {};
    for (const name of PASSED_THROUGH) {
      const value = settings.environment[name];
      if (value !== undefined) baseEnv[name] = value;
    }
    const engine = new Engine({
      store,
      config,
      git: new GitMirrors({ dir: path.join(settings.dataDir, "git") }),
      dataDir: settings.dataDir,
      concurrency: settings.concurrency,
      leaseMs: settings.leaseMs,
      killGraceMs: settings.killGraceMs,
      logFlushMs: settings.logFlushMs,
      baseEnv,
      report: (message) => print(`engine: ${message}`),
    });
    await engine.start();
    cleanups.unshift(() => engine.stop({ cancelRunning: true }));

    const http = await buildHttpApp({ engine, store, settings, version: VERSION });
    await http.listen({ port: settings.port, host: settings.host });
    cleanups.unshift(() => http.close());
    const port = (http.server.address() as AddressInfo).port;
    const url = `http://${settings.host.includes(":") ? `[${settings.host}]` : settings.host}:${port}`;

    print(
      `Turnout ${VERSION} listening on ${url} (${settings.databaseUrl ? "PostgreSQL" : `SQLite in ${settings.dataDir}`})`,
    );
    const apps = [...config.current().apps.keys()];
    print(`apps from ${settings.configDir}: ${apps.length > 0 ? apps.join(", ") : "(none)"}`);
    reportProblems(config, print);
    if (createdAdminToken) {
      print(
        `admin token (shown once; also saved to ${path.join(settings.dataDir, "admin-token")}, mode 0600):`,
      );
      print(`  ${createdAdminToken}`);
    }

    let closed = false;
    return {
      url,
      port,
      store,
      engine,
      config,
      createdAdminToken,
      close: async () => {
        if (closed) return;
        closed = true;
        await runCleanups(cleanups);
      },
    };
  } catch (error) {
    await runCleanups(cleanups);
    throw error;
  }
}

async function runCleanups(cleanups: (() => Promise<void> | void)[]): Promise<void> {
  for (const cleanup of cleanups) {
    try {
      await cleanup();
    } catch {
      // Keep closing the rest.
    }
  }
}

function reportProblems(config: ConfigProvider, print: (line: string) => void): void {
  for (const p of config.current().problems) {
    print(`config: ${p.file}${p.line ? `:${p.line}` : ""}: ${p.field}: ${p.message}`);
  }
}
