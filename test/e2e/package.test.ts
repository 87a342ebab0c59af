import { execFile } from "node:child_process";
import { mkdirSync, readdirSync, readFileSync, statSync, symlinkSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { ensureBuilt } from "../helpers/built-cli.js";
import { type ServerProcess, spawnServer } from "../helpers/server-process.js";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const run = promisify(execFile);
const NPM_ENV = {
  ...process.env,
  npm_config_update_notifier: "false",
  npm_config_fund: "false",
  npm_config_audit: "false",
};

beforeAll(ensureBuilt, 120_000);

/**
 * What `npm pack` ships (and so what a registry install gets): the compiled
 * program, its executable, the README and the docs; not the sources, tests,
 * benchmarks or build state. And that package, unpacked somewhere else with
 * only its production dependencies, runs: `--help`, and the demo end to end.
 */
describe("the npm package", () => {
  let dir: string | undefined;
  let server: ServerProcess | undefined;
  afterEach(async () => {
    server?.child.kill("SIGTERM");
    await server?.exited;
    server = undefined;
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("ships what runs and nothing else, and runs from the packed tarball alone", {
    timeout: 180_000,
  }, async () => {
    dir = await mkdtemp(path.join(tmpdir(), "turnout-pack-"));
    // With its lifecycle scripts: `prepare` builds first, as before a publish.
    const { stdout } = await run("npm", ["pack", "--json", "--pack-destination", dir], {
      cwd: ROOT,
      env: NPM_ENV,
      maxBuffer: 64 * 1024 * 1024,
    });
    const [packed] = JSON.parse(stdout.slice(stdout.indexOf("["))) as {
      filename: string;
      files: { path: string }[];
    }[];
    const files = packed!.files.map((f) => f.path).sort();

    const shipped =
      /^(package\.json|README\.md|LICENSE|bin\/turnout\.js|bin\/build-if-changed\.js|dist\/.+\.js|dist\/agent\/turnout-agent\.cjs|dist\/web\/.+|docs\/[a-z-]+\.md|docs\/grafana-dashboard\.json)$/;
    expect(files.filter((f) => !shipped.test(f))).toEqual([]);
    // Every module of the program, and the executable's entry point.
    const modules = sources(path.join(ROOT, "src")).map((f) => `dist/${f.replace(/\.ts$/, ".js")}`);
    expect(modules).toContain("dist/main.js");
    expect(modules.filter((m) => !files.includes(m))).toEqual([]);
    expect(files).toEqual(
      expect.arrayContaining([
        "package.json",
        "README.md",
        "bin/turnout.js",
        "dist/web/index.html",
        // The agent on its own, which the server serves to hosts (docs/fleets.md).
        "dist/agent/turnout-agent.cjs",
      ]),
    );
    // The web UI's build, and nothing compiled from a source that no longer exists.
    const ui = (f: string) => f.startsWith("dist/web/");
    expect(files.filter((f) => ui(f) && f.endsWith(".js")).length).toBeGreaterThan(0);
    const bundle = (f: string) => f === "dist/agent/turnout-agent.cjs";
    expect(
      files.filter((f) => f.startsWith("dist/") && !ui(f) && !bundle(f) && !modules.includes(f)),
    ).toEqual([]);

    // Unpacked, with the production dependencies only (a registry install has no others).
    const unpacked = path.join(dir, "unpacked");
    mkdirSync(unpacked);
    await run("tar", ["-xzf", path.join(dir, packed!.filename), "-C", unpacked]);
    const pkg = path.join(unpacked, "package");
    linkProductionDependencies(path.join(pkg, "node_modules"), await productionDependencies());

    const bin = path.join(pkg, "bin", "turnout.js");
    const cwd = path.join(dir, "elsewhere");
    mkdirSync(cwd);
    const env = { PATH: process.env["PATH"], HOME: cwd, XDG_CONFIG_HOME: path.join(cwd, "xdg") };
    const cli = (argv: string[], extra: Record<string, string> = {}) =>
      run(process.execPath, [bin, ...argv], { cwd, env: { ...env, ...extra }, timeout: 120_000 });

    const help = await cli(["--help"]);
    expect(help.stdout).toMatch(/^Usage: turnout/);

    // Installing the tarball may run `prepare`: in the package it has nothing to build.
    await run("npm", ["run", "prepare", "--silent"], { cwd: pkg, env: NPM_ENV });
    expect(statSync(path.join(pkg, "src"), { throwIfNoEntry: false })).toBeUndefined();

    server = await spawnServer([process.execPath, bin, "server", "--demo", "--port", "0"], { cwd, env });
    const deploy = await cli(["deploy", "demo", "staging", "--follow"], { TURNOUT_SERVER: server.url });
    expect(deploy.stdout).toContain("staging is now on 1.1.0");
    // The dashboard comes with the package: its page and its script, nothing fetched elsewhere.
    const page = await fetch(`${server.url}/`);
    expect(page.status).toBe(200);
    const html = await page.text();
    const script = /<script[^>]+src="([^"]+\.js)"/.exec(html)?.[1];
    expect(script).toBeDefined();
    expect((await fetch(new URL(script!, server.url))).status).toBe(200);
    // And the agent, for hosts to install with one command.
    const agent = await fetch(`${server.url}/turnout-agent.cjs`);
    expect(agent.status).toBe(200);
    expect((await agent.text()).startsWith("#!/usr/bin/env node")).toBe(true);
  });
});

function sources(dir: string, prefix = ""): string[] {
  const found: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const rel = prefix + entry.name;
    if (entry.isDirectory()) found.push(...sources(path.join(dir, entry.name), `${rel}/`));
    // Declaration files (types for an untyped library) compile to nothing.
    else if (rel.endsWith(".ts") && !rel.endsWith(".d.ts")) found.push(rel);
  }
  return found;
}

/** The installed packages `npm ls --omit=dev` lists: this repository's production dependency tree. */
async function productionDependencies(): Promise<string[]> {
  let stdout: string;
  try {
    ({ stdout } = await run("npm", ["ls", "--omit=dev", "--all", "--parseable"], {
      cwd: ROOT,
      env: NPM_ENV,
      maxBuffer: 64 * 1024 * 1024,
    }));
  } catch (error) {
    // npm ls exits non-zero for tree problems (an extraneous package) but still lists the tree.
    stdout = (error as { stdout?: string }).stdout ?? "";
  }
  const top = path.join(ROOT, "node_modules");
  const paths = stdout.split("\n").filter((p) => p.startsWith(`${top}/`));
  expect(paths.length).toBeGreaterThan(10);
  // The packages hoisted to the top: nested ones come with the package they are nested in.
  return paths.filter((p) => {
    const parts = path.relative(top, p).split(path.sep);
    return parts.length === 1 || (parts.length === 2 && parts[0]!.startsWith("@"));
  });
}

function linkProductionDependencies(modules: string, packages: string[]): void {
  const top = path.join(ROOT, "node_modules");
  for (const from of packages) {
    const to = path.join(modules, path.relative(top, from));
    mkdirSync(path.dirname(to), { recursive: true });
    symlinkSync(from, to, "dir");
  }
  // Sanity: a development-only package is not reachable from the package.
  expect(readFileSync(path.join(ROOT, "package.json"), "utf8")).toContain('"typescript"');
  expect(statSync(path.join(modules, "typescript"), { throwIfNoEntry: false })).toBeUndefined();
}
