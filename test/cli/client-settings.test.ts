import { mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import {
  credentialsPath,
  DEFAULT_SERVER,
  InvalidSettingError,
  isLocalServer,
  normalizeServerUrl,
  resolveClientSettings,
  saveCredentials,
} from "../../src/config/client-settings.js";
import { tempDir } from "./helpers.js";

function withCredentials(home: string, credentials: unknown): void {
  mkdirSync(path.join(home, ".config", "turnout"), { recursive: true });
  writeFileSync(path.join(home, ".config", "turnout", "credentials.json"), JSON.stringify(credentials));
}

describe("resolveClientSettings", () => {
  it("prefers the flag, then TURNOUT_SERVER/TURNOUT_TOKEN, then saved credentials", () => {
    const home = tempDir();
    withCredentials(home, {
      servers: {
        "http://saved:7700": { token: "saved-token" },
        "http://env:1": { token: "env-server-token" },
      },
      default: "http://saved:7700",
    });
    const env = { TURNOUT_SERVER: "http://env:1/", TURNOUT_TOKEN: "env-token" };

    expect(resolveClientSettings({ server: "http://flag:2", token: "flag-token" }, env, home, home)).toEqual({
      server: "http://flag:2",
      token: "flag-token",
      tokenSource: "flag",
    });
    expect(resolveClientSettings({}, env, home, home)).toMatchObject({
      server: "http://env:1",
      token: "env-token",
      tokenSource: "env",
    });
    // The saved token of the server in use, whichever way the server was chosen.
    expect(resolveClientSettings({}, { TURNOUT_SERVER: "http://env:1" }, home, home)).toMatchObject({
      token: "env-server-token",
      tokenSource: "credentials",
    });
    expect(resolveClientSettings({}, {}, home, home)).toMatchObject({
      server: "http://saved:7700",
      token: "saved-token",
    });
  });

  it("uses XDG_CONFIG_HOME for the credentials file", () => {
    const home = tempDir();
    const xdg = tempDir();
    mkdirSync(path.join(xdg, "turnout"));
    writeFileSync(
      path.join(xdg, "turnout", "credentials.json"),
      JSON.stringify({ servers: { "http://xdg:1": { token: "t" } }, default: "http://xdg:1" }),
    );
    expect(credentialsPath({ XDG_CONFIG_HOME: xdg }, home)).toBe(
      path.join(xdg, "turnout", "credentials.json"),
    );
    expect(resolveClientSettings({}, { XDG_CONFIG_HOME: xdg }, home, home).server).toBe("http://xdg:1");
  });

  it("finds a local server's admin token in TURNOUT_HOME, or ./.turnout by default", () => {
    const home = tempDir();
    const dataDir = tempDir();
    writeFileSync(path.join(dataDir, "admin-token"), "tnt_local\n");
    expect(resolveClientSettings({}, { TURNOUT_HOME: dataDir }, home, home)).toEqual({
      server: DEFAULT_SERVER,
      token: "tnt_local",
      tokenSource: "data-dir",
    });

    const cwd = tempDir();
    mkdirSync(path.join(cwd, ".turnout"));
    writeFileSync(path.join(cwd, ".turnout", "admin-token"), "tnt_cwd\n");
    expect(resolveClientSettings({ server: "http://localhost:9000" }, {}, home, cwd).token).toBe("tnt_cwd");
  });

  it("finds a local server's admin token in --data-dir first (the directory of `turnout server --data-dir`)", () => {
    const home = tempDir();
    const flagged = tempDir();
    const envDir = tempDir();
    writeFileSync(path.join(flagged, "admin-token"), "tnt_flag\n");
    writeFileSync(path.join(envDir, "admin-token"), "tnt_env\n");
    expect(resolveClientSettings({ dataDir: flagged }, { TURNOUT_HOME: envDir }, home, home).token).toBe(
      "tnt_flag",
    );
    // Relative to the working directory, as the server reads it.
    expect(
      resolveClientSettings({ dataDir: path.basename(flagged) }, {}, home, path.dirname(flagged)).token,
    ).toBe("tnt_flag");
    // A directory without a token: the error says where it looked, and how to point elsewhere.
    const empty = tempDir();
    expect(() => resolveClientSettings({ dataDir: empty }, {}, home, home)).toThrow(
      new RegExp(`--data-dir DIR / TURNOUT_HOME .*found no admin token in ${empty.replace(/[/.]/g, "\\$&")}`),
    );
  });

  it("never sends a local admin token to a remote server", () => {
    const home = tempDir();
    const dataDir = tempDir();
    writeFileSync(path.join(dataDir, "admin-token"), "tnt_local\n");
    expect(() =>
      resolveClientSettings({ server: "https://deploy.example.com" }, { TURNOUT_HOME: dataDir }, home, home),
    ).toThrow(/turnout login/);
  });

  it("tells to run turnout login when there is no token", () => {
    const home = tempDir();
    expect(() => resolveClientSettings({}, {}, home, home)).toThrow(
      /no API token for http:\/\/127\.0\.0\.1:7700.*turnout login/,
    );
  });

  it("rejects a server that is not an http(s) URL as a usage error", () => {
    const home = tempDir();
    expect(() => resolveClientSettings({ server: "ftp://x", token: "t" }, {}, home, home)).toThrow(
      InvalidSettingError,
    );
    expect(() => normalizeServerUrl("not a url")).toThrow(InvalidSettingError);
    expect(normalizeServerUrl("http://h:1/prefix/")).toBe("http://h:1/prefix");
  });

  it("knows which servers are local", () => {
    expect(isLocalServer("http://127.0.0.1:7700")).toBe(true);
    expect(isLocalServer("http://localhost:1")).toBe(true);
    expect(isLocalServer("http://[::1]:7700")).toBe(true);
    expect(isLocalServer("http://10.0.0.1:7700")).toBe(false);
    expect(isLocalServer("http://localhost.example.com")).toBe(false);
  });
});

describe("saveCredentials", () => {
  it("writes the file 0600 in a 0700 directory and keeps other servers", () => {
    const home = tempDir();
    const file = credentialsPath({}, home);
    saveCredentials(file, "http://a:1", "token-a");
    saveCredentials(file, "http://b:2", "token-b");

    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(statSync(path.dirname(file)).mode & 0o777).toBe(0o700);
    expect(JSON.parse(readFileSync(file, "utf8"))).toEqual({
      servers: { "http://a:1": { token: "token-a" }, "http://b:2": { token: "token-b" } },
      default: "http://b:2",
    });
  });

  it("tightens an existing file that was too open", () => {
    const home = tempDir();
    const file = credentialsPath({}, home);
    mkdirSync(path.dirname(file), { recursive: true, mode: 0o755 });
    writeFileSync(file, "{}", { mode: 0o644 });
    saveCredentials(file, "http://a:1", "t");
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(statSync(path.dirname(file)).mode & 0o777).toBe(0o700);
  });
});
