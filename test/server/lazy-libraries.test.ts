import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { ensureBuilt } from "../helpers/built-cli.js";
import { startServerProcess } from "../helpers/server-process.js";
import { until } from "../helpers/wait.js";

/**
 * A default `turnout server` (SQLite, no notification channels, no agent
 * connected, JSON logs, no settings file) loads none of the libraries of the
 * features it does not use: they cost idle memory and cold start
 * (docs/benchmarks.md, "Server and API"), and each is loaded where its
 * feature is made.
 */
const NOT_LOADED = [
  "@slack/web-api",
  "irc-framework",
  "undici",
  "pg",
  "ws",
  "pino-pretty",
  "@aws-sdk/client-s3",
];
// Still loaded, and not listed: yaml (by @fastify/swagger, for the OpenAPI document) and
// tar-stream (by the artifact upload route and SSH staging).

describe("a default server's libraries", () => {
  let dir: string | undefined;
  afterEach(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("loads none of the optional features' libraries", async () => {
    await ensureBuilt();
    dir = mkdtempSync(path.join(tmpdir(), "turnout-lazy-"));
    const list = path.join(dir, "modules.json");
    // Written by the server process itself: every CommonJS module it has loaded (the ESM loader
    // loads CommonJS packages through the same cache).
    const preload = path.join(dir, "list-modules.cjs");
    writeFileSync(
      preload,
      `setInterval(() => require("fs").writeFileSync(${JSON.stringify(list)}, JSON.stringify(Object.keys(require.cache))), 100).unref();\n`,
    );
    const server = await startServerProcess({
      dataDir: path.join(dir, "data"),
      configDir: path.join(dir, "turnout.d"),
      cwd: dir,
      env: { ...process.env, NODE_OPTIONS: `--require ${preload}`, TURNOUT_DATABASE_URL: "" },
    });
    try {
      expect((await fetch(`${server.url}/healthz`)).status).toBe(200);
      let loaded: string[] = [];
      await until(
        () => {
          try {
            loaded = JSON.parse(readFileSync(list, "utf8")) as string[];
          } catch {
            return false;
          }
          return loaded.some((file) => file.includes(`${path.sep}better-sqlite3${path.sep}`));
        },
        30_000,
        "the server's list of modules",
      );
      const packages = new Set(
        loaded.map((file) => /node_modules\/((@[^/]+\/)?[^/]+)\//.exec(file)?.[1]).filter(Boolean),
      );
      expect(NOT_LOADED.filter((name) => packages.has(name))).toEqual([]);
    } finally {
      server.child.kill("SIGTERM");
      await server.exited;
    }
  });
});
