import { mkdirSync } from "node:fs";
import path from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { ensureBuilt, turnout } from "../helpers/built-cli.js";
import { startServerProcess } from "../helpers/server-process.js";
import { tempDir } from "./helpers.js";

beforeAll(ensureBuilt, 120_000);

describe("turnout server", () => {
  it("starts, serves the local client without a login, and stops cleanly on SIGTERM", async () => {
    const root = tempDir("turnout-server-cmd-");
    const dataDir = path.join(root, "data");
    const configDir = path.join(root, "turnout.d");
    mkdirSync(configDir);
    const env = { PATH: process.env["PATH"], HOME: root, XDG_CONFIG_HOME: path.join(root, "xdg") };
    const server = await startServerProcess({ dataDir, configDir, cwd: root, env });
    const { url } = server;
    try {
      // The quick start: the server's data directory holds the admin token.
      const apps = await turnout(["apps", "--server", url], {
        env: { ...env, TURNOUT_HOME: dataDir },
        cwd: root,
      });
      expect(apps.stderr).toBe("");
      expect(apps.stdout).toBe("no apps configured\n");
      expect(apps.code).toBe(0);
    } finally {
      server.child.kill("SIGTERM");
    }
    expect(await server.exited).toBe(0);
  });
});
