import { existsSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { credentialsPath } from "../../src/config/client-settings.js";
import { runInProcess, tempDir } from "./helpers.js";

// A port nothing listens on: requests that get past argument parsing fail with 1, not 2.
const NOWHERE = ["--server", "http://127.0.0.1:9", "--token", "t"];

describe("usage errors exit with 2", () => {
  it.each([
    ["no command", []],
    ["unknown command", ["depoly", "shop", "staging"]],
    ["unknown option", ["deploy", "shop", "staging", "--frobnicate"]],
    ["missing argument", ["deploy", "shop"]],
    ["too many arguments", ["status", "shop", "staging", "extra"]],
    ["param without =", ["deploy", "shop", "staging", "--param", "novalue"]],
    ["invalid app name", ["deploy", "../etc", "staging"]],
    ["invalid deploy reference", ["logs", "shop-staging-4"]],
    ["lock without a reason", ["lock", "shop", "staging"]],
    ["unknown role", ["token", "create", "ci", "--role", "root"]],
    ["token create without a role", ["token", "create", "ci"]],
    ["rollback --to not a number", ["rollback", "shop", "staging", "--to", "last"]],
    ["server --port out of range", ["server", "--port", "70000"]],
    ["a server that is not a URL", ["status", "--server", "nonsense", "--token", "t"]],
    ["login without a token", ["login", "--server", "http://127.0.0.1:9"]],
  ])("%s", async (_name, argv) => {
    const result = await runInProcess([...argv]);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/error|Usage/);
    expect(result.stdout).toBe("");
  });

  it("--help is not an error", async () => {
    const result = await runInProcess(["deploy", "--help"]);
    expect(result.code).toBe(0);
    expect(result.stdout).toContain("--param <name=value>");
  });
});

describe("failures that are not usage errors exit with 1", () => {
  it("an unreachable server says how to start one", async () => {
    const result = await runInProcess(["status", ...NOWHERE]);
    expect(result.code).toBe(1);
    expect(result.stderr).toBe(
      "error: cannot reach the Turnout server at http://127.0.0.1:9 (is it running? start it with: npm start)\n",
    );
  });

  it("no token anywhere says to log in", async () => {
    const result = await runInProcess(["apps"], { env: { TURNOUT_HOME: tempDir() } });
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/^error: no API token for http:\/\/127\.0\.0\.1:7700: run `turnout login/);
  });

  it("login against an unreachable server saves nothing", async () => {
    const home = tempDir();
    const result = await runInProcess(["login", ...NOWHERE], { homeDir: home });
    expect(result.code).toBe(1);
    expect(existsSync(credentialsPath({}, home))).toBe(false);
  });

  it("never prints the token", async () => {
    const result = await runInProcess([
      "deploy",
      "shop",
      "staging",
      "--server",
      "http://127.0.0.1:9",
      "--token",
      "s3cret-token",
    ]);
    expect(result.code).toBe(1);
    expect(result.stdout + result.stderr).not.toContain("s3cret-token");
  });
});
