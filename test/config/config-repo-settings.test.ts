import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import type { CliContext } from "../../src/cli/context.js";
import { runCli } from "../../src/cli/program.js";
import { configRepoAuth } from "../../src/config/config-repo-auth.js";
import { resolveSettings, type ServerSettings } from "../../src/config/settings.js";
import { Buffer } from "../cli/helpers.js";

/** The configuration-repository settings: flags > environment > settings file > defaults. */
const root = mkdtempSync(path.join(tmpdir(), "turnout-config-settings-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

function settingsFile(yaml: string): string {
  const file = path.join(root, `settings-${Math.random().toString(36).slice(2)}.yaml`);
  writeFileSync(file, yaml);
  return file;
}

describe("configuration repository settings", () => {
  it("uses the directory, polled every 3 s, when no repository is given", () => {
    const s = resolveSettings({}, {}, root);
    expect(s.configRepo).toBeUndefined();
    expect(s.configBranch).toBe("main");
    expect(s.configPollMs).toBe(3000);
    expect(s.configDir).toBe(path.join(root, "turnout.d"));
  });

  it("takes the flag over the environment over the settings file, and polls a repository every 30 s", () => {
    const file = settingsFile(
      "config_repo: https://git.example.com/file.git\nconfig_branch: from-file\nconfig_repo_token_env: FILE_TOKEN\nconfig_repo_ssh_key: keys/config\n",
    );
    const env = {
      TURNOUT_SETTINGS_FILE: file,
      TURNOUT_CONFIG_REPO: "https://git.example.com/env.git",
      TURNOUT_CONFIG_BRANCH: "from-env",
    };
    const fromFlags = resolveSettings(
      { configRepo: "git@git.example.com:acme/flag.git", configBranch: "from-flag" },
      env,
      root,
    );
    expect(fromFlags).toMatchObject({
      configRepo: "git@git.example.com:acme/flag.git",
      configBranch: "from-flag",
      configRepoTokenEnv: "FILE_TOKEN",
      configRepoSshKey: path.join(root, "keys/config"),
      configPollMs: 30_000,
    });
    expect(resolveSettings({}, env, root)).toMatchObject({
      configRepo: "https://git.example.com/env.git",
      configBranch: "from-env",
    });
    expect(resolveSettings({}, { TURNOUT_SETTINGS_FILE: file }, root)).toMatchObject({
      configRepo: "https://git.example.com/file.git",
      configBranch: "from-file",
    });
  });

  it("an empty TURNOUT_CONFIG_REPO means the directory", () => {
    expect(resolveSettings({}, { TURNOUT_CONFIG_REPO: "" }, root).configRepo).toBeUndefined();
  });

  it("makes a relative local path absolute from where the server starts", () => {
    expect(resolveSettings({ configRepo: "config" }, {}, root).configRepo).toBe(path.join(root, "config"));
    expect(resolveSettings({ configRepo: "../config" }, {}, root).configRepo).toBe(
      path.join(path.dirname(root), "config"),
    );
  });

  it("takes the poll interval from TURNOUT_CONFIG_POLL or config_poll", () => {
    expect(resolveSettings({}, { TURNOUT_CONFIG_POLL: "2m" }, root).configPollMs).toBe(120_000);
    const file = settingsFile("config_poll: 45s\n");
    expect(resolveSettings({ settingsFile: file }, {}, root).configPollMs).toBe(45_000);
    expect(() => resolveSettings({}, { TURNOUT_CONFIG_POLL: "0s" }, root)).toThrow(
      expect.objectContaining({ code: "E_CONFIG" }),
    );
  });

  it("refuses a branch git could read as an option and an unsupported URL", () => {
    expect(() =>
      resolveSettings({ configRepo: "/srv/config", configBranch: "--upload-pack=x" }, {}, root),
    ).toThrow(
      expect.objectContaining({ code: "E_CONFIG", message: expect.stringContaining("starts with '-'") }),
    );
    expect(() => resolveSettings({ configRepo: "ext::sh -c touch% /tmp/pwned" }, {}, root)).toThrow(
      expect.objectContaining({ code: "E_CONFIG", message: expect.stringContaining("transport helper") }),
    );
  });
});

describe("configRepoAuth", () => {
  it("reads the token from the variable the settings name, and the SSH key path", () => {
    const s = resolveSettings(
      { configRepo: "https://git.example.com/c.git" },
      {
        TURNOUT_CONFIG_REPO_TOKEN_ENV: "CFG_TOKEN",
        CFG_TOKEN: "s3cret",
        TURNOUT_CONFIG_REPO_SSH_KEY: "/k/id",
      },
      root,
    );
    expect(configRepoAuth(s)).toEqual({ token: "s3cret", tokenEnv: "CFG_TOKEN", sshKeyFile: "/k/id" });
    expect(configRepoAuth(resolveSettings({}, {}, root))).toEqual({});
  });

  it("stops the server when the named variable is not set", () => {
    const s = resolveSettings({}, { TURNOUT_CONFIG_REPO_TOKEN_ENV: "MISSING" }, root);
    expect(() => configRepoAuth(s)).toThrow(
      expect.objectContaining({ code: "E_CONFIG", message: expect.stringContaining("MISSING") }),
    );
  });
});

describe("turnout server --config-repo --config-branch", () => {
  it("passes both flags into the server settings", async () => {
    let seen: ServerSettings | undefined;
    const out = new Buffer();
    const ctx: CliContext = {
      stdout: out,
      stderr: out,
      env: {},
      homeDir: root,
      cwd: root,
      waitForStop: () => Promise.resolve("SIGTERM"),
    };
    const code = await runCli(
      ["server", "--config-repo", "https://git.example.com/acme/config.git", "--config-branch", "live"],
      ctx,
      {
        startServer: async (settings) => {
          seen = settings;
          return { url: "http://127.0.0.1:1", close: async () => {} };
        },
      },
    );
    expect(out.text).toBe("");
    expect(code).toBe(0);
    expect(seen).toMatchObject({
      configRepo: "https://git.example.com/acme/config.git",
      configBranch: "live",
      configPollMs: 30_000,
    });
  });
});
