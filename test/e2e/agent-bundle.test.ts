import { type ChildProcess, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { builtinModules } from "node:module";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { PROTOCOL_VERSION } from "../../src/agent/protocol.js";
import { ensureBuilt } from "../helpers/built-cli.js";
import { assertConsistent, currentOf, waitForHosts } from "../helpers/fleet.js";
import { startTurnout, type TestTurnout } from "../helpers/turnout.js";
import { until } from "../helpers/wait.js";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const BUNDLE = path.join(ROOT, "dist", "agent", "turnout-agent.cjs");

beforeAll(ensureBuilt, 180_000);

/**
 * The agent on its own: the bundled file (bin/build-agent.js) as a host
 * installs it, downloaded from the server into a directory with no
 * node_modules anywhere above it, run with `node` alone, deploying releases
 * of a real server. The second release reaches the host as a manifest
 * difference (protocol 2); a host that lost its kept manifests reads the
 * whole one and still stages the right release.
 */
const manifest = `repo: "{repo}"
environments:
  production:
    deploy:
      provider: fleet
      hosts: { labels: { role: web } }
      strategy: { batch: 100% }
`;

describe("the bundled agent (dist/agent/turnout-agent.cjs)", () => {
  let t: TestTurnout | undefined;
  let work = "";
  const children: ChildProcess[] = [];

  afterEach(async () => {
    for (const child of children.splice(0)) {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill("SIGKILL");
        await new Promise((resolve) => child.once("close", resolve));
      }
    }
    await t?.stop();
    t = undefined;
    if (work) await rm(work, { recursive: true, force: true });
    work = "";
  });

  it("is one file with no native modules and nothing outside Node's own modules", () => {
    const text = readFileSync(BUNDLE, "utf8");
    expect(text.startsWith("#!/usr/bin/env node\n")).toBe(true);
    const required = new Set([...text.matchAll(/require\("([^"]+)"\)/g)].map((m) => m[1]!));
    expect(required.size).toBeGreaterThan(0);
    // Only Node's built-in modules: no packages (there is no node_modules on a host), no addons.
    const builtins = new Set(builtinModules);
    for (const name of required) {
      expect(name.startsWith("node:") || builtins.has(name), `require("${name}")`).toBe(true);
    }
    expect(text).not.toMatch(/\.node["']/);
    expect(text).not.toMatch(/better-sqlite3|bindings|node-gyp-build|bufferutil|utf-8-validate/);
  });

  it("downloads from the server, runs from a bare directory and deploys; a one-file change is a difference", async () => {
    t = await startTurnout({ manifest });
    work = await mkdtemp(path.join(tmpdir(), "turnout-bundle-"));
    // Installed as the docs say: one download, from the server itself.
    const download = await fetch(`${t.url}/turnout-agent.cjs`);
    expect(download.status).toBe(200);
    const body = Buffer.from(await download.arrayBuffer());
    expect(body.equals(readFileSync(BUNDLE))).toBe(true);
    expect(download.headers.get("x-content-sha256")).toBe(createHash("sha256").update(body).digest("hex"));
    const bin = path.join(work, "bin");
    const file = path.join(bin, "turnout-agent");
    mkdirSync(bin, { recursive: true });
    writeFileSync(file, body);
    chmodSync(file, 0o755);
    // No node_modules in the work directory or above it (tmpdir), so nothing but the file can be loaded.
    for (let dir = bin; dir !== path.dirname(dir); dir = path.dirname(dir)) {
      expect(existsSync(path.join(dir, "node_modules")), dir).toBe(false);
    }

    const token = (
      await t.api("POST", "/api/v1/tokens", {
        name: "enroll",
        role: "agent",
        apps: ["shop"],
        labels: ["role=web"],
      })
    ).body.token as string;
    const root = path.join(work, "host");
    const agent = run(file, [
      "--server",
      t.url,
      "--token",
      token,
      "--name",
      "web-1",
      "--root",
      root,
      "--label",
      "role=web",
    ]);
    await waitForHosts(t.api, ["web-1"]);
    // The server may see the host before the agent's own line has come through its stdout.
    const connected = new RegExp(
      `connected to http://127\\.0\\.0\\.1:\\d+ \\(host id \\d+, protocol ${PROTOCOL_VERSION}\\)`,
    );
    await until(() => connected.test(agent.output()), 10_000, "the agent's connected line");

    const deploy = async () => {
      const id = (await t!.api("POST", "/api/v1/apps/shop/environments/production/deploys", {})).body.deploy
        .id;
      const done = await t!.waitForDeploy(id, 60_000);
      const log = (await t!.store.logs.read(id, 0)).chunks.map((c) => c.text).join("");
      expect(done.status, log).toBe("succeeded");
      return { id, log };
    };
    const files: Record<string, string> = { VERSION: "1.0.0\n" };
    for (let i = 0; i < 200; i++) files[`lib/f${i}.txt`] = `file ${i}\n`;
    await t.repo.commit(files, "a release of 200 files");
    const first = await deploy();
    expect(first.log).toMatch(/\[web-1\] staged/);
    const firstRelease = (await t.store.releases.current("shop", "production"))!.artifact!;
    expect(await currentOf(root, "shop")).toBe(firstRelease.slice(0, 16));
    // The manifest is kept for the next release's difference.
    expect(readdirSync(path.join(root, ".turnout", "manifests"))).toEqual([`${firstRelease}.json`]);

    await t.repo.commit({ VERSION: "1.0.1\n" }, "one small change");
    const second = await deploy();
    const secondRelease = (await t.store.releases.current("shop", "production"))!.artifact!;
    expect(secondRelease).not.toBe(firstRelease);
    expect(await currentOf(root, "shop")).toBe(secondRelease.slice(0, 16));
    expect(readFileSync(path.join(root, "shop", "current", "VERSION"), "utf8")).toBe("1.0.1\n");
    expect(readFileSync(path.join(root, "shop", "current", "lib", "f7.txt"), "utf8")).toBe("file 7\n");
    expect(second.log).toMatch(/\[web-1\] staged .*manifest: difference/);
    expect(second.log).not.toMatch(/reading the whole manifest/);

    // A host that lost its kept manifests (deleted by hand): the whole manifest, from the server.
    rmSync(path.join(root, ".turnout", "manifests"), { recursive: true, force: true });
    await t.repo.commit({ VERSION: "1.0.2\n" }, "another change");
    const third = await deploy();
    expect(readFileSync(path.join(root, "shop", "current", "VERSION"), "utf8")).toBe("1.0.2\n");
    expect(readFileSync(path.join(root, "shop", "current", "lib", "f199.txt"), "utf8")).toBe("file 199\n");
    // The server knew the agent's list (heartbeats): either it sent the whole manifest, or the agent read it.
    expect(third.log).toMatch(/\[web-1\] staged .*manifest: (whole|read from the server)/);
    await assertConsistent([root]);

    // SIGTERM: a clean stop, exit 0.
    agent.child.kill("SIGTERM");
    expect(await agent.exited).toBe(0);
  });

  it("takes the flags of `turnout agent` and answers --version without a server", async () => {
    work = await mkdtemp(path.join(tmpdir(), "turnout-bundle-"));
    const version = run(BUNDLE, ["--version"]);
    expect(await version.exited).toBe(0);
    expect(version.output().trim()).toBe(
      JSON.parse(readFileSync(path.join(ROOT, "package.json"), "utf8")).version,
    );
    const missing = run(BUNDLE, ["agent", "--root", work]);
    expect(await missing.exited).toBe(2);
    expect(missing.output()).toMatch(/needs --server URL/);
  });

  function run(file: string, args: string[]) {
    const child = spawn(process.execPath, [file, ...args], {
      cwd: work,
      env: { PATH: process.env["PATH"], HOME: work },
      stdio: ["ignore", "pipe", "pipe"],
    });
    children.push(child);
    let output = "";
    child.stdout!.setEncoding("utf8").on("data", (d: string) => {
      output += d;
    });
    child.stderr!.setEncoding("utf8").on("data", (d: string) => {
      output += d;
    });
    const exited = new Promise<number | null>((resolve) => child.on("close", (code) => resolve(code)));
    return { child, output: () => output, exited };
  }
});
