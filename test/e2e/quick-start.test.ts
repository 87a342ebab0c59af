import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { ensureBuilt, turnout } from "../helpers/built-cli.js";
import { type ServerProcess, startServerProcess } from "../helpers/server-process.js";

beforeAll(ensureBuilt, 120_000);

/** The README's promise: start with the demo, deploy it with one command, watch the log. */
describe("quick start with the demo app", () => {
  let root: string;
  let server: ServerProcess | undefined;

  afterEach(async () => {
    server?.child.kill("SIGTERM");
    await server?.exited;
    await rm(root, { recursive: true, force: true });
  });

  it("deploys the demo's staging and production from a fresh directory", async () => {
    root = await mkdtemp(path.join(tmpdir(), "turnout-e2e-demo-"));
    const env = { PATH: process.env["PATH"], HOME: root, XDG_CONFIG_HOME: path.join(root, "xdg") };
    // Defaults as `npm start` uses them: ./.turnout and ./turnout.d under the working directory.
    server = await startServerProcess({
      dataDir: path.join(root, ".turnout"),
      configDir: path.join(root, "turnout.d"),
      cwd: root,
      env,
      args: ["--demo"],
    });
    expect(server.output()).toContain("demo: created the app 'demo'");
    expect(server.output()).toMatch(/admin token \(shown once/);

    const staging = await turnout(["deploy", "demo", "staging", "--follow", "--server", server.url], {
      env,
      cwd: root,
    });
    expect(staging.code).toBe(0);
    expect(staging.stdout).toContain("staging is now on 1.1.0");
    // #1 is the demo's first release (1.0.0), deployed by the server on its first start.
    expect(staging.stderr).toMatch(/demo\/staging#2 succeeded/);
    expect(server.output()).toContain("demo: deploying v1.0.0 to staging (demo/staging#1)");

    const production = await turnout(["deploy", "demo", "production", "--follow", "--server", server.url], {
      env,
      cwd: root,
    });
    expect(production.code).toBe(0);
    expect(production.stdout).toContain("deploy.sh: releasing version 1.1.0");

    const history = await turnout(["history", "demo", "staging", "--server", server.url], { env, cwd: root });
    expect(history.stdout).toMatch(/#1\s+[0-9a-f]{12}/);
  });
});
