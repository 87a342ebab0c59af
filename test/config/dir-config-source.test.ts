import { mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { DirConfigSource } from "../../src/config/dir-config-source.js";
import { type LoadOptions, manifestParsesInThisThread } from "../../src/config/manifest-loader.js";
import { ManifestParser } from "../../src/config/manifest-parser.js";
import type { ShellDeployConfig } from "../../src/domain/app-config.js";
import { ensureBuilt } from "../helpers/built-cli.js";
import { until } from "../helpers/wait.js";
import { aliasBomb, manyKeys } from "./hostile-manifests.js";

/**
 * A configuration directory serves every valid manifest and reports the
 * others with file, line and field; a manifest that breaks after it was valid
 * keeps its last valid version. Only what changed is read, only new content
 * is parsed, and parsing happens in the worker thread.
 */
let dir: string;
let root: string;
let parser: ManifestParser;

const LOAD: LoadOptions = {
  defaultTimeoutMs: 60_000,
  defaultIdleTimeoutMs: 30_000,
  environment: {},
  hostedReposDir: "/nonexistent/hosted",
};

beforeAll(async () => {
  await ensureBuilt(); // the parser's worker runs dist/
  parser = new ManifestParser({ load: LOAD });
}, 180_000);
afterAll(() => parser.close());

beforeEach(() => {
  root = mkdtempSync(path.join(tmpdir(), "turnout-dir-config-"));
  dir = path.join(root, "turnout.d");
  mkdirSync(dir);
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

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
const open = () => DirConfigSource.open(dir, { parser, startupWaitMs: 60_000 });
const commandOf = (config: DirConfigSource, app: string) =>
  (config.current().apps.get(app)?.environments["staging"]?.deploy as ShellDeployConfig | undefined)?.command;

describe("DirConfigSource", () => {
  it("serves the valid apps and reports a broken manifest with file, line and field", async () => {
    write("shop.yaml", manifest());
    write("blog.yaml", BAD_FIELD);
    write("wiki.yml", "repo: [unclosed\n");
    const config = await open();
    expect([...config.current().apps.keys()]).toEqual(["shop"]);
    const status = config.status();
    expect(status.source).toEqual({ kind: "dir", path: dir });
    expect(status.lastError).toBeNull();
    expect(status.loading).toEqual([]);
    expect(status.revision).toMatch(/^dir-[0-9a-f]{16}$/);
    expect(status.problems).toEqual([
      {
        app: "blog",
        file: path.join(dir, "blog.yaml"),
        line: 7,
        field: "environments.staging.deploy.timeout",
        message: "a duration like 90s, 30m or 1h",
      },
      {
        app: "wiki",
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
    const config = await open();
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
    expect(commandOf(config, "blog")).toEqual(["printf", "{sha}"]);
    expect(now.problems).toEqual([
      expect.objectContaining({
        app: "shop",
        file: path.join(dir, "shop.yaml"),
        line: 7,
        field: "environments.staging.deploy.timeout",
      }),
    ]);

    // Nothing changed on disk: nothing to tell anyone.
    expect(await config.refresh()).toBe(false);
    expect(seen).toHaveLength(1);
  });

  it("an app name that is not a valid name is reported against its file", async () => {
    write("Shop_App.yaml", manifest());
    const config = await open();
    expect(config.current().apps.size).toBe(0);
    expect(config.status().problems).toEqual([
      expect.objectContaining({ file: path.join(dir, "Shop_App.yaml"), line: null, field: "(file name)" }),
    ]);
  });

  it("reports two files for one app instead of picking one", async () => {
    write("shop.yaml", manifest());
    write("shop.yml", manifest("printf"));
    const config = await open();
    expect(commandOf(config, "shop")).toEqual(["echo", "{sha}"]);
    expect(config.status().problems).toEqual([
      {
        app: "shop",
        file: path.join(dir, "shop.yml"),
        line: null,
        field: "(file name)",
        message: `app 'shop' is already defined by ${path.join(dir, "shop.yaml")}`,
      },
    ]);
  });

  it("an alias bomb is one app's problem, with its line: the others load, and later reloads still work", async () => {
    write("shop.yaml", manifest());
    write("bomb.yaml", aliasBomb(manifest()));
    const config = await open();
    expect([...config.current().apps.keys()]).toEqual(["shop"]);
    expect(config.status().problems).toEqual([
      {
        app: "bomb",
        file: path.join(dir, "bomb.yaml"),
        line: 12, // `e:`, whose first alias takes the expansion over the cap
        field: "(yaml)",
        message: expect.stringContaining("aliases expand to more than 10000 nodes"),
      },
    ]);
    write("shop.yaml", manifest("printf"));
    expect(await config.refresh()).toBe(true);
    expect(commandOf(config, "shop")).toEqual(["printf", "{sha}"]);
  });

  it("refuses a manifest over the size cap without reading or parsing it", async () => {
    write("shop.yaml", manifest());
    const config = await open();
    const before = config.stats();
    write("huge.yaml", manyKeys(manifest(), 20_000, 80)); // about 2 MB, 20,000 keys
    expect(await config.refresh()).toBe(true);
    // Not parsed; and of the two files only shop.yaml, written just now, may have been read again.
    expect(config.stats().parses).toBe(before.parses);
    expect(config.stats().reads).toBeLessThanOrEqual(before.reads + 1);
    expect(config.status().problems).toEqual([
      {
        app: "huge",
        file: path.join(dir, "huge.yaml"),
        line: null,
        field: "(file)",
        message: expect.stringMatching(/^is \d\.\d MiB; manifests are limited to 256 KiB$/),
      },
    ]);
  });

  it("parses a large manifest with many keys under the cap in the worker, and a duplicate key keeps its line", async () => {
    // Other files run earlier in this worker may have parsed in this thread: count from here.
    const parsesBefore = manifestParsesInThisThread();
    const big = manyKeys(manifest(), 4_000); // about 100 KB
    write("big.yaml", big);
    write("dup.yaml", `${big}        KEY_17: again\n`);
    const config = await open();
    expect(config.current().apps.get("big")?.environments["staging"]?.deploy.env["KEY_3999"]).toBe(
      "value-3999",
    );
    expect(config.status().problems).toEqual([
      {
        app: "dup",
        file: path.join(dir, "dup.yaml"),
        line: big.split("\n").length,
        field: "(yaml)",
        message: 'key "KEY_17" is given twice (map keys must be unique)',
      },
    ]);
    // Every manifest went to the worker thread; this thread parsed none.
    expect(config.stats().parses).toBeGreaterThanOrEqual(2);
    expect(manifestParsesInThisThread()).toBe(parsesBefore);
  });

  it("does not parse a file again while its content is unchanged, and does not even read it once it has settled", async () => {
    write("shop.yaml", manifest());
    write("blog.yaml", manifest());
    const config = await open();
    const loaded = config.stats();

    // Polls with nothing changed parse nothing. (Just written, the files are still read:
    // a change in the same clock tick would keep their times, see dir-config-source.ts.)
    expect(await config.refresh()).toBe(false);
    expect(config.stats().parses).toBe(loaded.parses);

    // Touched, same content: read and hashed, not parsed.
    const later = new Date(Date.now() + 5_000);
    utimesSync(path.join(dir, "shop.yaml"), later, later);
    expect(await config.refresh()).toBe(false);
    expect(config.stats().parses).toBe(loaded.parses);

    // Once the files are older than the racy window, a poll only stats them.
    await new Promise((resolve) => setTimeout(resolve, 2_200));
    await config.refresh(); // reads once more and marks them settled
    const settled = config.stats();
    expect(await config.refresh()).toBe(false);
    expect(await config.refresh()).toBe(false);
    expect(config.stats()).toEqual(settled);

    // One file changed: one read, one parse.
    write("blog.yaml", manifest("printf"));
    expect(await config.refresh()).toBe(true);
    expect(config.stats()).toEqual({ reads: settled.reads + 1, parses: settled.parses + 1 });
    // However the files were parsed, the same content is the same revision.
    expect(await config.refresh()).toBe(false);
  });
});

describe("the first load", () => {
  it("does not hold up start-up: an app being parsed is 'loading' until the worker answers", async () => {
    const hold = new Int32Array(new SharedArrayBuffer(4));
    const held = new ManifestParser({ load: LOAD, hold });
    try {
      write("shop.yaml", manifest());
      const config = await DirConfigSource.open(dir, { parser: held, startupWaitMs: 0 });
      const changes: string[] = [];
      config.onChange((_previous, next) => changes.push(next.revision));
      await until(() => held.pending() === 1, 30_000, "the manifest reaching the parser");
      expect(config.current().apps.size).toBe(0);
      expect(config.status().loading).toEqual([{ app: "shop", file: path.join(dir, "shop.yaml") }]);

      Atomics.store(hold, 0, 1);
      Atomics.notify(hold, 0);
      await config.loaded();
      expect([...config.current().apps.keys()]).toEqual(["shop"]);
      expect(config.status().loading).toEqual([]);
      // Completing the first load is not a configuration change.
      expect(changes).toEqual([]);
    } finally {
      await held.close();
    }
  });

  it("an idle worker is stopped, and started again for the next manifest", async () => {
    const idle = new ManifestParser({ load: LOAD, idleMs: 0 });
    try {
      expect("app" in (await idle.parse(path.join(dir, "a.yaml"), manifest()))).toBe(true);
      await until(() => idle.idle(), 30_000, "the idle worker to stop");
      expect("app" in (await idle.parse(path.join(dir, "b.yaml"), manifest()))).toBe(true);
      expect(idle.stats()).toEqual({ parsed: 2, stopped: 0, workersStarted: 2 });
    } finally {
      await idle.close();
    }
  });

  it("a manifest the parser cannot finish in time is refused, and the next one gets a fresh worker", async () => {
    const hold = new Int32Array(new SharedArrayBuffer(4));
    const slow = new ManifestParser({ load: LOAD, hold, timeoutMs: 300 });
    try {
      const stuck = await slow.parse(path.join(dir, "stuck.yaml"), manifest());
      expect(stuck).toEqual({
        problems: [
          {
            file: path.join(dir, "stuck.yaml"),
            line: null,
            field: "(file)",
            message: "took longer than 300ms to parse; refused",
          },
        ],
      });
      Atomics.store(hold, 0, 1);
      const next = await slow.parse(path.join(dir, "shop.yaml"), manifest());
      expect("app" in next).toBe(true);
      expect(slow.stats()).toEqual({ parsed: 1, stopped: 1, workersStarted: 2 });
    } finally {
      await slow.close();
    }
  });
});
