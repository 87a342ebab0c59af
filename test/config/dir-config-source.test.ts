import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { DirConfigSource } from "../../src/config/dir-config-source.js";
import type { LoadOptions } from "../../src/config/manifest-loader.js";
import type { ShellDeployConfig } from "../../src/domain/app-config.js";

/**
 * A configuration directory serves every valid manifest and reports the
 * others with file, line and field; a manifest that breaks after it was valid
 * keeps its last valid version.
 */
let dir: string;
let root: string;

beforeEach(() => {
  root = mkdtempSync(path.join(tmpdir(), "turnout-dir-config-"));
  dir = path.join(root, "turnout.d");
  mkdirSync(dir);
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

const LOAD: LoadOptions = {
  defaultTimeoutMs: 60_000,
  defaultIdleTimeoutMs: 30_000,
  environment: {},
  hostedReposDir: "/nonexistent/hosted",
};

const manifest = (command = "echo") => `repo: /srv/git/app.git
environments:
  staging:
    branch: main
    deploy:
      provider: shell
      command: [${command}, "{sha}"]
`;

// `timeout` on line 7 is not a duration.
const BAD_FIELD = `repo: /srv/git/app.git
environments:
  staging:
    branch: main
    deploy:
      provider: shell
      timeout: soon
      command: [echo]
`;

const write = (name: string, text: string) => writeFileSync(path.join(dir, name), text);

describe("DirConfigSource", () => {
  it("serves the valid apps and reports a broken manifest with file, line and field", () => {
    write("shop.yaml", manifest());
    write("blog.yaml", BAD_FIELD);
    write("wiki.yml", "repo: [unclosed\n");
    const config = new DirConfigSource(dir, LOAD);
    expect([...config.current().apps.keys()]).toEqual(["shop"]);
    const status = config.status();
    expect(status.source).toEqual({ kind: "dir", path: dir });
    expect(status.lastError).toBeNull();
    expect(status.revision).toMatch(/^dir-[0-9a-f]{16}$/);
    expect(status.problems).toEqual([
      {
        file: path.join(dir, "blog.yaml"),
        line: 7,
        field: "environments.staging.deploy.timeout",
        message: "a duration like 90s, 30m or 1h",
      },
      {
        file: path.join(dir, "wiki.yml"),
        line: expect.any(Number),
        field: "(yaml)",
        message: expect.any(String),
      },
    ]);
  });

  it("keeps serving an app's last valid manifest when it breaks, and the other apps are untouched", async () => {
    write("shop.yaml", manifest());
    write("blog.yaml", manifest());
    const config = new DirConfigSource(dir, LOAD);
    const seen: string[] = [];
    config.onChange((previous, next) => seen.push(`${previous.revision}→${next.revision}`));
    const first = config.current();

    write("shop.yaml", BAD_FIELD);
    write("blog.yaml", manifest("printf"));
    expect(await config.refresh()).toBe(true);
    const now = config.current();
    expect(seen).toEqual([`${first.revision}→${now.revision}`]);
    expect([...now.apps.keys()].sort()).toEqual(["blog", "shop"]);
    expect(now.apps.get("shop")).toBe(first.apps.get("shop"));
    expect(
      (now.apps.get("blog")?.environments["staging"]?.deploy as ShellDeployConfig | undefined)?.command,
    ).toEqual(["printf", "{sha}"]);
    expect(now.problems).toEqual([
      expect.objectContaining({
        file: path.join(dir, "shop.yaml"),
        line: 7,
        field: "environments.staging.deploy.timeout",
      }),
    ]);

    // Nothing changed on disk: nothing to tell anyone.
    expect(await config.refresh()).toBe(false);
    expect(seen).toHaveLength(1);
  });

  it("an app name that is not a valid name is reported against its file", () => {
    write("Shop_App.yaml", manifest());
    const config = new DirConfigSource(dir, LOAD);
    expect(config.current().apps.size).toBe(0);
    expect(config.status().problems).toEqual([
      expect.objectContaining({ file: path.join(dir, "Shop_App.yaml"), line: null, field: "(file name)" }),
    ]);
  });
});
