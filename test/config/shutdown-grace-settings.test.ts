import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { resolveSettings } from "../../src/config/settings.js";

const root = mkdtempSync(path.join(tmpdir(), "turnout-grace-settings-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** shutdown_grace: how long a stopping server lets running deploys finish (environment > file > 60 s). */
describe("shutdown grace setting", () => {
  it("defaults to 60 s, and an empty variable means not set", () => {
    expect(resolveSettings({}, {}, root).shutdownGraceMs).toBe(60_000);
    expect(resolveSettings({}, { TURNOUT_SHUTDOWN_GRACE: "" }, root).shutdownGraceMs).toBe(60_000);
  });

  it("takes the environment over the settings file, and 0 means interrupt at once", () => {
    const file = path.join(root, "settings.yaml");
    writeFileSync(file, "shutdown_grace: 5m\n");
    expect(resolveSettings({}, { TURNOUT_SETTINGS_FILE: file }, root).shutdownGraceMs).toBe(300_000);
    const env = { TURNOUT_SETTINGS_FILE: file, TURNOUT_SHUTDOWN_GRACE: "90s" };
    expect(resolveSettings({}, env, root).shutdownGraceMs).toBe(90_000);
    expect(resolveSettings({}, { TURNOUT_SHUTDOWN_GRACE: "0" }, root).shutdownGraceMs).toBe(0);
  });

  it("refuses a value that is not a duration", () => {
    expect(() => resolveSettings({}, { TURNOUT_SHUTDOWN_GRACE: "soon" }, root)).toThrow(
      expect.objectContaining({ code: "E_VALIDATION", message: expect.stringContaining('"soon"') }),
    );
  });
});
