import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { resolveSettings } from "../../src/config/settings.js";

const root = mkdtempSync(path.join(tmpdir(), "turnout-timer-settings-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

/**
 * Settings that become timer delays are held to what a timer can wait (about
 * 24 days): a longer delay fires at once in Node, so `default_timeout: 1000h`
 * would stop every deploy the moment it starts. The same rule as manifests'
 * durations (test/property/manifest.property.test.ts found the class there).
 */
describe("timer settings", () => {
  it("refuses durations longer than a timer can wait, naming the value", () => {
    const file = path.join(root, "settings.yaml");
    writeFileSync(file, "default_timeout: 1000h\n");
    expect(() => resolveSettings({}, { TURNOUT_SETTINGS_FILE: file }, root)).toThrow(
      expect.objectContaining({ message: expect.stringContaining('"1000h"') }),
    );
    for (const [name, value] of [
      ["TURNOUT_LEASE", "600h"],
      ["TURNOUT_KILL_GRACE", "99999h"],
      ["TURNOUT_SHUTDOWN_GRACE", "700h"],
      ["TURNOUT_CONFIG_POLL", "1000h"],
      ["TURNOUT_CONFIG_STARTUP_WAIT", "600h"],
      ["TURNOUT_BODY_TIMEOUT", "600h"],
    ]) {
      expect(() => resolveSettings({}, { [name!]: value! }, root), name).toThrow(
        expect.objectContaining({ message: expect.stringContaining("596h") }),
      );
    }
  });

  it("refuses a zero lease or default timeout, and keeps 0 where it means 'at once'", () => {
    const file = path.join(root, "zero.yaml");
    writeFileSync(file, "default_idle_timeout: 0s\n");
    expect(() => resolveSettings({}, { TURNOUT_SETTINGS_FILE: file }, root)).toThrow(
      expect.objectContaining({ code: "E_VALIDATION" }),
    );
    expect(() => resolveSettings({}, { TURNOUT_LEASE: "0" }, root)).toThrow(
      expect.objectContaining({ code: "E_VALIDATION" }),
    );
    const settings = resolveSettings(
      {},
      { TURNOUT_SHUTDOWN_GRACE: "0", TURNOUT_KILL_GRACE: "0s", TURNOUT_CONFIG_STARTUP_WAIT: "0s" },
      root,
    );
    expect([settings.shutdownGraceMs, settings.killGraceMs, settings.configStartupWaitMs]).toEqual([0, 0, 0]);
  });

  it("takes the longest a timer can wait", () => {
    const settings = resolveSettings({}, { TURNOUT_LEASE: "596h", TURNOUT_SHUTDOWN_GRACE: "24h" }, root);
    expect(settings.leaseMs).toBe(596 * 3_600_000);
    expect(settings.shutdownGraceMs).toBe(86_400_000);
  });
});
