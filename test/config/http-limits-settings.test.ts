import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { DEFAULT_HTTP_LIMITS, resolveSettings } from "../../src/config/settings.js";

/** The HTTP server's limits: environment > settings file > defaults. */
const root = mkdtempSync(path.join(tmpdir(), "turnout-limits-settings-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

function settingsFile(yaml: string): string {
  const file = path.join(root, `settings-${Math.random().toString(36).slice(2)}.yaml`);
  writeFileSync(file, yaml);
  return file;
}

describe("HTTP limits settings", () => {
  it("have documented defaults", () => {
    expect(resolveSettings({}, {}, root)).toMatchObject({
      headersTimeoutMs: 10_000,
      bodyTimeoutMs: 30_000,
      uploadMinRate: 1024,
      keepAliveTimeoutMs: 5_000,
      maxConnections: 10_000,
    });
    expect(DEFAULT_HTTP_LIMITS.maxConnections).toBe(10_000);
  });

  it("come from the settings file, and the environment wins over it", () => {
    const file = settingsFile(
      "headers_timeout: 5s\nbody_timeout: 1m\nupload_min_rate: 0\nkeep_alive_timeout: 2\nmax_connections: 300\n",
    );
    expect(resolveSettings({ settingsFile: file }, {}, root)).toMatchObject({
      headersTimeoutMs: 5_000,
      bodyTimeoutMs: 60_000,
      uploadMinRate: 0,
      keepAliveTimeoutMs: 2_000,
      maxConnections: 300,
    });
    const env = {
      TURNOUT_HEADERS_TIMEOUT: "2s",
      TURNOUT_BODY_TIMEOUT: "500ms",
      TURNOUT_UPLOAD_MIN_RATE: "65536",
      TURNOUT_KEEP_ALIVE_TIMEOUT: "1s",
      TURNOUT_MAX_CONNECTIONS: "50",
    };
    expect(resolveSettings({ settingsFile: file }, env, root)).toMatchObject({
      headersTimeoutMs: 2_000,
      bodyTimeoutMs: 500,
      uploadMinRate: 65_536,
      keepAliveTimeoutMs: 1_000,
      maxConnections: 50,
    });
  });

  it("refuse values that would cut every client or make no sense", () => {
    expect(() => resolveSettings({}, { TURNOUT_BODY_TIMEOUT: "50ms" }, root)).toThrow(/at least 100ms/);
    expect(() => resolveSettings({}, { TURNOUT_HEADERS_TIMEOUT: "soon" }, root)).toThrow(/invalid duration/);
    expect(() => resolveSettings({}, { TURNOUT_MAX_CONNECTIONS: "0" }, root)).toThrow(/max connections/);
    expect(() => resolveSettings({}, { TURNOUT_UPLOAD_MIN_RATE: "-1" }, root)).toThrow(/upload min rate/);
    expect(() => resolveSettings({ settingsFile: settingsFile("max_connectons: 5\n") }, {}, root)).toThrow(
      /max_connectons/,
    );
  });
});
