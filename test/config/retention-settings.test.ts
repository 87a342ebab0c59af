import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { resolveSettings } from "../../src/config/settings.js";

/** Retention settings: environment > settings file (`retention:`) > defaults. */
const root = mkdtempSync(path.join(tmpdir(), "turnout-retention-settings-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

function settingsFile(yaml: string): string {
  const file = path.join(root, `settings-${Math.random().toString(36).slice(2)}.yaml`);
  writeFileSync(file, yaml);
  return file;
}

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

describe("retention settings", () => {
  it("keeps 10 releases and 500 logs per environment, logs 90 days, and collects hourly and after 50 deploys by default", () => {
    expect(resolveSettings({}, {}, root).retention).toEqual({
      releases: 10,
      artifactGraceMs: DAY,
      blobGraceMs: HOUR,
      logs: 500,
      logAgeMs: 90 * DAY,
      gcIntervalMs: HOUR,
      gcAfterDeploys: 50,
    });
  });

  it("reads the settings file, days included, and lets the environment override it", () => {
    const file = settingsFile(
      [
        "retention:",
        "  releases: 3",
        "  artifact_grace: 2d",
        "  blob_grace: 30m",
        "  logs: 40",
        "  log_age: 7d",
        "  gc_interval: off",
        "  gc_after_deploys: 0",
        "",
      ].join("\n"),
    );
    expect(resolveSettings({}, { TURNOUT_SETTINGS_FILE: file }, root).retention).toEqual({
      releases: 3,
      artifactGraceMs: 2 * DAY,
      blobGraceMs: 30 * 60_000,
      logs: 40,
      logAgeMs: 7 * DAY,
      gcIntervalMs: 0,
      gcAfterDeploys: 0,
    });
    const env = {
      TURNOUT_SETTINGS_FILE: file,
      TURNOUT_RETENTION_RELEASES: "25",
      TURNOUT_RETENTION_LOG_AGE: "1h30m",
      TURNOUT_GC_INTERVAL: "15m",
    };
    const overridden = resolveSettings({}, env, root).retention;
    expect(overridden.releases).toBe(25);
    expect(overridden.logAgeMs).toBe(90 * 60_000);
    expect(overridden.gcIntervalMs).toBe(15 * 60_000);
    expect(overridden.logs).toBe(40);
  });

  it("refuses what it cannot use, naming the setting", () => {
    expect(() => resolveSettings({}, { TURNOUT_RETENTION_RELEASES: "0" }, root)).toThrow(
      /retention\.releases/,
    );
    expect(() => resolveSettings({}, { TURNOUT_RETENTION_LOG_AGE: "soon" }, root)).toThrow(
      /retention\.log_age: invalid duration/,
    );
    expect(() =>
      resolveSettings(
        {},
        { TURNOUT_SETTINGS_FILE: settingsFile("retention:\n  keep_forever: true\n") },
        root,
      ),
    ).toThrow(/retention/);
    for (const env of [{ TURNOUT_RETENTION_RELEASES: "ten" }, { TURNOUT_GC_INTERVAL: "-1h" }]) {
      expect(() => resolveSettings({}, env, root)).toThrow(expect.objectContaining({ code: "E_CONFIG" }));
    }
  });
});
