import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { GitConfigSource } from "../../src/config/git-config-source.js";
import type { LoadOptions } from "../../src/config/manifest-loader.js";
import { ManifestParser } from "../../src/config/manifest-parser.js";
import type { ConfigSnapshot, ShellDeployConfig } from "../../src/domain/app-config.js";
import { GitMirrors } from "../../src/git/mirrors.js";
import { withGitLog } from "../git/git-spy.js";
import { ensureBuilt } from "../helpers/built-cli.js";
import { makeRepo, startGitHttpServer, type TestRepo } from "../helpers/git-fixtures.js";

/**
 * Configuration as code against real repositories and real mirrors: each
 * app of a commit is taken or refused on its own, an app whose manifest
 * breaks keeps its last valid version, and only blobs not parsed before are
 * read and parsed.
 */
const root = mkdtempSync(path.join(tmpdir(), "turnout-git-config-"));
let parser: ManifestParser;
afterAll(async () => {
  await parser?.close();
  rmSync(root, { recursive: true, force: true });
});

const LOAD: LoadOptions = {
  defaultTimeoutMs: 60_000,
  defaultIdleTimeoutMs: 30_000,
  environment: {},
  hostedReposDir: path.join(root, "hosted"),
};

const manifest = (command = "echo") => `repo: /srv/git/app.git
environments:
  staging:
    branch: main
    auto_deploy: true
    deploy:
      provider: shell
      command: [${command}, "{sha}"]
`;

// An unknown key (line 8): the problem names its object, `deploy` on line 5, and the field path.
const UNKNOWN_KEY = `repo: /srv/git/app.git
environments:
  staging:
    branch: main
    deploy:
      provider: shell
      command: [echo]
      colour: red
`;

// A key given twice (line 5) is a YAML error, as a careless merge easily produces.
const BAD_YAML = `repo: /srv/git/app.git
environments:
  staging:
    branch: main
  staging:
    branch: other
`;

beforeAll(async () => {
  await ensureBuilt(); // the parser's worker runs dist/
  parser = new ManifestParser({ load: LOAD });
}, 180_000);

let counter = 0;
let repo: TestRepo;
let mirrors: GitMirrors;

beforeEach(async () => {
  counter += 1;
  repo = await makeRepo(path.join(root, `origin-${counter}`));
  mirrors = new GitMirrors({ dir: path.join(root, `mirrors-${counter}`) });
});

const open = (url = repo.path, extra: Partial<Parameters<typeof GitConfigSource.open>[0]> = {}) =>
  GitConfigSource.open({
    url,
    branch: "main",
    auth: {},
    git: mirrors,
    parser,
    startupWaitMs: 60_000,
    ...extra,
  });

const appNames = (snapshot: ConfigSnapshot) => [...snapshot.apps.keys()].sort();
const commandOf = (snapshot: ConfigSnapshot, app: string) =>
  (snapshot.apps.get(app)?.environments["staging"]?.deploy as ShellDeployConfig | undefined)?.command;
const short = (sha: string) => sha.slice(0, 7);

describe("GitConfigSource", () => {
  it("loads the manifests of turnout.d/ at the branch head; the revision is the commit SHA", async () => {
    await repo.commit({
      "turnout.d/shop.yaml": manifest(),
      "turnout.d/blog.yml": manifest(),
      "turnout.d/README.md": "not a manifest\n",
      // With turnout.d/ present, YAML at the root is not configuration (and would not validate).
      "docker-compose.yml": "services: {}\n",
    });
    const config = await open();
    expect(appNames(config.current())).toEqual(["blog", "shop"]);
    expect(config.current().revision).toBe(repo.head);
    expect(config.current().apps.get("shop")?.source).toBe(`turnout.d/shop.yaml@${short(repo.head)}`);
    expect(config.current().apps.get("shop")?.environments["staging"]?.autoDeploy).toBe(true);
    expect(config.status()).toEqual({
      source: { kind: "git", url: repo.path, branch: "main" },
      revision: repo.head,
      loadedAt: config.current().loadedAt,
      problems: [],
      lastError: null,
      loading: [],
    });
  });

  it("reads the repository root when there is no turnout.d/, skipping dot-files and subfolders", async () => {
    await repo.commit({
      "shop.yaml": manifest(),
      ".pre-commit-config.yaml": "repos: []\n",
      "docs/example.yaml": "whatever: 1\n",
    });
    const config = await open();
    expect(appNames(config.current())).toEqual(["shop"]);
    expect(config.current().apps.get("shop")?.source).toBe(`shop.yaml@${short(repo.head)}`);
  });

  it("follows the configured branch, not the repository's HEAD", async () => {
    await repo.commit({ "shop.yaml": manifest() });
    await repo.checkout("config");
    const onBranch = await repo.commit({ "blog.yaml": manifest() });
    await repo.checkout("main");
    const config = await open(repo.path, { branch: "config" });
    expect(config.current().revision).toBe(onBranch);
    expect(appNames(config.current())).toEqual(["blog", "shop"]);
  });

  it("takes a new commit on refresh and tells listeners the previous and the next configuration", async () => {
    const first = await repo.commit({ "turnout.d/shop.yaml": manifest() });
    const config = await open();
    const seen: Array<[string, string]> = [];
    config.onChange((previous, next) => seen.push([previous.revision, next.revision]));

    const second = await repo.commit({ "turnout.d/shop.yaml": manifest("printf") });
    expect(await config.refresh()).toBe(true);
    expect(seen).toEqual([[first, second]]);
    expect(config.current().revision).toBe(second);
    const deploy = config.current().apps.get("shop")?.environments["staging"]?.deploy;
    expect((deploy as ShellDeployConfig | undefined)?.command).toEqual(["printf", "{sha}"]);
  });

  it("takes a commit app by app: a broken manifest keeps its app's last valid version, the others change", async () => {
    await repo.commit({
      "turnout.d/shop.yaml": manifest(),
      "turnout.d/blog.yaml": manifest(),
    });
    const config = await open();
    const changes: string[] = [];
    config.onChange((_previous, next) => changes.push(next.revision));
    const added = await repo.commit({ "turnout.d/news.yaml": manifest() });
    expect(await config.refresh()).toBe(true);
    const kept = config.current().apps.get("shop");

    // shop: broken YAML; blog: an unknown key; wiki: new and valid; news: changed and valid.
    const bad = await repo.commit({
      "turnout.d/shop.yaml": BAD_YAML,
      "turnout.d/blog.yaml": UNKNOWN_KEY,
      "turnout.d/wiki.yaml": manifest(),
      "turnout.d/news.yaml": manifest("printf"),
    });
    expect(await config.refresh()).toBe(true);
    expect(changes).toHaveLength(2);
    expect(config.current().revision).toBe(bad);
    expect(appNames(config.current())).toEqual(["blog", "news", "shop", "wiki"]);
    expect(config.current().apps.get("shop")).toBe(kept);
    expect(config.current().apps.get("shop")?.source).toBe(`turnout.d/shop.yaml@${short(added)}`);
    expect(commandOf(config.current(), "blog")).toEqual(["echo", "{sha}"]);
    expect(commandOf(config.current(), "news")).toEqual(["printf", "{sha}"]);
    expect(config.current().apps.get("wiki")?.source).toBe(`turnout.d/wiki.yaml@${short(bad)}`);

    const status = config.status();
    expect(status.revision).toBe(bad);
    expect(status.lastError).toBeNull();
    expect(status.problems).toEqual([
      {
        app: "blog",
        file: `turnout.d/blog.yaml@${short(bad)}`,
        line: 5,
        field: "environments.staging.deploy",
        message: 'Unrecognized key: "colour"',
      },
      {
        app: "shop",
        file: `turnout.d/shop.yaml@${short(bad)}`,
        line: 5,
        field: "(yaml)",
        message: expect.stringContaining("unique"),
      },
    ]);

    // Fixing it in a later commit clears the problems.
    const fixed = await repo.commit({ "turnout.d/shop.yaml": manifest(), "turnout.d/blog.yaml": manifest() });
    expect(await config.refresh()).toBe(true);
    expect(config.status()).toMatchObject({ revision: fixed, problems: [], lastError: null });
  });

  it("reports two manifests for one app and a symbolic link instead of guessing", async () => {
    await repo.commit({ "shop.yaml": manifest(), "blog.yaml": manifest() });
    const config = await open();
    const { symlink } = await import("node:fs/promises");
    await symlink("blog.yaml", path.join(repo.path, "wiki.yaml"));
    const bad = await repo.commit({ "shop.yml": manifest("printf") });
    expect(await config.refresh()).toBe(true);
    expect(config.status().problems).toEqual([
      {
        app: "shop",
        file: `shop.yml@${short(bad)}`,
        line: null,
        field: "(file name)",
        message: `app 'shop' is already defined by shop.yaml@${short(bad)}`,
      },
      {
        app: "wiki",
        file: `wiki.yaml@${short(bad)}`,
        line: null,
        field: "(file)",
        message: "is a symbolic link; manifests must be regular files",
      },
    ]);
    expect(appNames(config.current())).toEqual(["blog", "shop"]);
    expect(commandOf(config.current(), "shop")).toEqual(["echo", "{sha}"]);
  });

  it("starts with the valid apps of an invalid head, and the problems of the others", async () => {
    const bad = await repo.commit({ "turnout.d/shop.yaml": UNKNOWN_KEY, "turnout.d/blog.yaml": manifest() });
    const config = await open();
    expect(appNames(config.current())).toEqual(["blog"]);
    expect(config.status()).toMatchObject({
      revision: bad,
      problems: [
        {
          app: "shop",
          file: `turnout.d/shop.yaml@${short(bad)}`,
          line: 5,
          field: "environments.staging.deploy",
        },
      ],
      lastError: null,
    });

    const seen: Array<[string, string]> = [];
    config.onChange((previous, next) => seen.push([previous.revision, next.revision]));
    const fixed = await repo.commit({ "turnout.d/shop.yaml": manifest() });
    expect(await config.refresh()).toBe(true);
    expect(seen).toEqual([[bad, fixed]]);
    expect(appNames(config.current())).toEqual(["blog", "shop"]);
    expect(config.status().problems).toEqual([]);
  });

  it("an unchanged head costs one fetch, and nothing is re-read", async () => {
    await repo.commit({ "turnout.d/shop.yaml": manifest() });
    const config = await open();
    const before = config.current();
    let changed: boolean | undefined;
    const calls = await withGitLog(async () => {
      changed = await config.refresh();
    });
    expect(changed).toBe(false);
    expect(config.current()).toBe(before);
    // The lookup of the head goes to the mirror's long-lived cat-file, started by the first open.
    expect(calls.map((c) => c.argv[0])).toEqual(["fetch"]);
    expect(
      calls.some(
        (c) => c.argv.includes("ls-tree") || (c.argv.includes("cat-file") && c.argv.includes("blob")),
      ),
    ).toBe(false);
  });

  it("a new commit reads and parses only the manifests whose blobs changed", async () => {
    await repo.commit({ "turnout.d/shop.yaml": manifest(), "turnout.d/blog.yaml": manifest() });
    const config = await open();
    const before = config.stats();
    await repo.commit({ "turnout.d/blog.yaml": manifest("printf"), "README.md": "not configuration\n" });
    const calls = await withGitLog(async () => {
      expect(await config.refresh()).toBe(true);
    });
    expect(calls.filter((c) => c.argv.includes("cat-file") && c.argv.includes("blob"))).toHaveLength(1);
    expect(config.stats()).toEqual({ reads: before.reads + 1, parses: before.parses + 1 });
    // The unchanged app is the same object, labelled with the commit it now comes from.
    expect(config.current().apps.get("shop")?.source).toBe(`turnout.d/shop.yaml@${short(repo.head)}`);
  });

  it("refuses a manifest over the size cap without reading it", async () => {
    const huge = `${manifest()}      env:\n${Array.from({ length: 12_000 }, (_, i) => `        K${i}: value-${i}-padding-padding`).join("\n")}\n`;
    await repo.commit({ "shop.yaml": manifest(), "huge.yaml": huge });
    const calls = await withGitLog(async () => {
      await open();
    });
    const reads = calls.filter((c) => c.argv.includes("cat-file") && c.argv.includes("blob"));
    expect(reads).toHaveLength(1); // shop.yaml only
    const config = await open();
    expect(config.status().problems).toEqual([
      {
        app: "huge",
        file: `huge.yaml@${short(repo.head)}`,
        line: null,
        field: "(file)",
        message: expect.stringMatching(/^is \d+ KiB; manifests are limited to 256 KiB$/),
      },
    ]);
  });

  it("refreshes asked for during a refresh share one later run", async () => {
    await repo.commit({ "turnout.d/shop.yaml": manifest() });
    const config = await open();
    const next = await repo.commit({ "turnout.d/shop.yaml": manifest("printf") });
    const results = await Promise.all([config.refresh(), config.refresh(), config.refresh()]);
    expect(results).toEqual([true, false, false]);
    expect(config.current().revision).toBe(next);
  });

  it("fails to open when the repository cannot be reached and was never fetched", async () => {
    await expect(open(path.join(root, "no-such-repo"))).rejects.toMatchObject({ code: "E_GIT" });
  });

  it("starts from the mirror fetched earlier when the repository is unreachable", async () => {
    const head = await repo.commit({ "shop.yaml": manifest() });
    await open();
    await repo.remove();
    const warnings: string[] = [];
    const config = await open(repo.path, { report: (line) => warnings.push(line) });
    expect(config.current().revision).toBe(head);
    expect(warnings).toEqual([
      expect.stringContaining(`starting from the copy fetched earlier (${head.slice(0, 12)})`),
    ]);
    await expect(config.refresh()).rejects.toMatchObject({ code: "E_GIT" });
    expect(config.current().revision).toBe(head);
  });

  it("reads a private repository over https with a token and never shows the credentials", async () => {
    const served = await makeRepo(path.join(root, `served-${counter}`, "config"));
    await served.commit({ "turnout.d/shop.yaml": manifest() });
    const server = await startGitHttpServer({
      root: path.join(root, `served-${counter}`),
      token: "t0ken-xyz",
    });
    try {
      const config = await open(`${server.url}/config`, {
        auth: { token: "t0ken-xyz", tokenEnv: "CFG_TOKEN" },
      });
      expect(config.current().revision).toBe(served.head);
      const withUser = await open(server.url.replace("http://", "http://deploy:t0ken-xyz@") + "/config");
      expect(withUser.status().source).toEqual({ kind: "git", url: `${server.url}/config`, branch: "main" });
      expect(JSON.stringify(withUser.status())).not.toContain("t0ken-xyz");
    } finally {
      await server.close();
    }
  });
});
