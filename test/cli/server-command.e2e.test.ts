import { spawn } from "node:child_process";
import { mkdirSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { beforeAll, describe, expect, it } from "vitest";
import { ensureBuilt, turnout } from "./built-cli.js";
import { tempDir } from "./helpers.js";

const BIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../bin/turnout.js");

beforeAll(ensureBuilt, 120_000);

describe("turnout server", () => {
  it("starts, serves the local client without a login, and stops cleanly on SIGTERM", async () => {
    const root = tempDir("turnout-server-cmd-");
    const dataDir = path.join(root, "data");
    const configDir = path.join(root, "turnout.d");
    mkdirSync(configDir);
    const env = { PATH: process.env["PATH"], HOME: root, XDG_CONFIG_HOME: path.join(root, "xdg") };
    const server = spawn(
      process.execPath,
      [BIN, "server", "--port", "0", "--data-dir", dataDir, "--config-dir", configDir],
      { cwd: root, env, stdio: ["ignore", "pipe", "pipe"] },
    );
    let output = "";
    server.stdout.setEncoding("utf8").on("data", (chunk: string) => {
      output += chunk;
    });
    server.stderr.setEncoding("utf8").on("data", (chunk: string) => {
      output += chunk;
    });
    const exited = new Promise<number | null>((resolve) => server.on("close", (code) => resolve(code)));
    try {
      const deadline = Date.now() + 20_000;
      let url: string | undefined;
      while (!url) {
        url = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(output)?.[1];
        if (Date.now() > deadline) throw new Error(`server did not start:\n${output}`);
        await new Promise((r) => setTimeout(r, 50));
      }

      // The quick start: the server's data directory holds the admin token.
      const apps = await turnout(["apps", "--server", url], {
        env: { ...env, TURNOUT_HOME: dataDir },
        cwd: root,
      });
      expect(apps.stderr).toBe("");
      expect(apps.stdout).toBe("no apps configured\n");
      expect(apps.code).toBe(0);
    } finally {
      server.kill("SIGTERM");
    }
    expect(await exited).toBe(0);
  });
});
