import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { parseManifest } from "../../src/config/manifest-loader.js";
import { resolveSettings } from "../../src/config/settings.js";
import type { AppConfig } from "../../src/domain/app-config.js";
import { moveLegacyHostedRepos } from "../../src/git/hosted-repos.js";
import { startServer } from "../../src/server/start-server.js";
import { git, makeRepo, type TestRepo } from "../helpers/git-fixtures.js";
import { until } from "../helpers/wait.js";

/**
 * Hosted components of multi-repo apps used to live at
 * `hosted/<app>-<component>.git`; they move to `hosted/<app>/<component>.git`
 * on start, once, when nothing else could own the old name.
 */
const SHELL = `    deploy:\n      provider: shell\n      command: ["true"]\n`;
const SINGLE = `hosted: true\nenvironments:\n  staging:\n${SHELL}`;
const COMPONENT = (component: string) =>
  `components:\n  ${component}:\n    hosted: true\nenvironments:\n  staging:\n${SHELL}`;

let root: string;
let hosted: string;
let work: TestRepo;

function app(name: string, yaml: string): AppConfig {
  const parsed = parseManifest(`/config/${name}.yaml`, yaml, {
    defaultTimeoutMs: 60_000,
    defaultIdleTimeoutMs: 60_000,
    environment: {},
    hostedReposDir: hosted,
  });
  if (!("app" in parsed)) throw new Error(JSON.stringify(parsed.problems));
  return parsed.app;
}

/** A bare repository at `hosted/<name>` holding `work`'s main. */
async function legacyRepo(name: string): Promise<string> {
  const dir = path.join(hosted, name);
  mkdirSync(dir, { recursive: true });
  await git(dir, "init", "--quiet", "--bare");
  await git(work.path, "push", "--quiet", dir, "main");
  return dir;
}

beforeEach(async () => {
  root = mkdtempSync(path.join(tmpdir(), "turnout-hosted-"));
  hosted = path.join(root, "data", "hosted");
  work = await makeRepo(path.join(root, "work"));
  await work.commit({ "README.md": "pushed before the upgrade\n" }, "first");
});

afterEach(() => rmSync(root, { recursive: true, force: true }));

describe("moveLegacyHostedRepos", () => {
  it("moves a component's repository to <app>/<component>.git, with its history, once", async () => {
    await legacyRepo("suite-api.git");
    const apps = [app("suite", COMPONENT("api")), app("shop", SINGLE)];
    expect(apps[0]!.components[0]!.repo).toBe(path.join(hosted, "suite", "api.git"));

    expect(await moveLegacyHostedRepos(hosted, apps)).toEqual([
      "hosted: moved suite-api.git to suite/api.git",
    ]);
    expect(existsSync(path.join(hosted, "suite-api.git"))).toBe(false);
    expect(await git(path.join(hosted, "suite", "api.git"), "rev-parse", "refs/heads/main")).toBe(work.head);
    // Done: a second start finds nothing to move.
    expect(await moveLegacyHostedRepos(hosted, apps)).toEqual([]);
  });

  it("leaves a repository that two apps could own where it is, and says so", async () => {
    await legacyRepo("col-web.git");
    const apps = [app("col", COMPONENT("web")), app("col-web", SINGLE)];
    const lines = await moveLegacyHostedRepos(hosted, apps);
    expect(lines).toEqual([
      "hosted: left col-web.git where it is: it may belong to col-web.git (app 'col-web') or col/web.git; move it by hand (see docs/operations.md)",
    ]);
    expect(await git(path.join(hosted, "col-web.git"), "rev-parse", "refs/heads/main")).toBe(work.head);
    expect(existsSync(path.join(hosted, "col"))).toBe(false);
  });

  it("never overwrites a repository already at the new place", async () => {
    await legacyRepo("suite-api.git");
    mkdirSync(path.join(hosted, "suite"));
    await legacyRepo("suite/api.git");
    const lines = await moveLegacyHostedRepos(hosted, [app("suite", COMPONENT("api"))]);
    expect(lines).toEqual([
      "hosted: left suite-api.git where it is: suite/api.git exists already; merge them by hand",
    ]);
    expect(existsSync(path.join(hosted, "suite-api.git"))).toBe(true);
  });

  it("leaves repositories no component claims alone", async () => {
    await legacyRepo("shop.git");
    await legacyRepo("gone-web.git");
    expect(await moveLegacyHostedRepos(hosted, [app("shop", SINGLE)])).toEqual([]);
    expect(existsSync(path.join(hosted, "shop.git"))).toBe(true);
    expect(existsSync(path.join(hosted, "gone-web.git"))).toBe(true);
  });
});

describe("on server start", () => {
  it("the server moves the repository before serving it", async () => {
    const dataDir = path.join(root, "data");
    const configDir = path.join(root, "turnout.d");
    mkdirSync(configDir, { recursive: true });
    writeFileSync(path.join(configDir, "suite.yaml"), COMPONENT("api"));
    await legacyRepo("suite-api.git");
    const printed: string[] = [];
    const settings = resolveSettings(
      { port: 0, dataDir, configDir },
      { PATH: process.env["PATH"], HOME: process.env["HOME"] },
      root,
    );
    const server = await startServer(settings, { print: (line) => printed.push(line), polling: false });
    try {
      // At start, or (a manifest still being parsed on a loaded machine) as soon as it is parsed.
      await until(
        () => printed.includes("hosted: moved suite-api.git to suite/api.git"),
        30_000,
        "the legacy repository moved",
      );
      const token = readFileSync(path.join(dataDir, "admin-token"), "utf8").trim();
      const clone = path.join(root, "clone");
      await git(
        root,
        "clone",
        "--quiet",
        "--branch",
        "main",
        `${server.url.replace("//", `//x:${token}@`)}/git/suite/api.git`,
        clone,
      );
      expect(await git(clone, "rev-parse", "HEAD")).toBe(work.head);
    } finally {
      await server.close();
    }
  });
});
