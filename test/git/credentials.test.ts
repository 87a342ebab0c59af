import { execFileSync } from "node:child_process";
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GitMirrors } from "../../src/git/mirrors.js";
import { type GitHttpServer, makeRepo, startGitHttpServer, type TestRepo } from "../helpers/git-fixtures.js";
import { withGitLog } from "./git-spy.js";

const TOKEN = "s3cr3t-t0ken-4f9a1c";

let root: string;
let origin: TestRepo;
let server: GitHttpServer;
let repoUrl: string;

beforeAll(async () => {
  root = mkdtempSync(path.join(tmpdir(), "turnout-git-creds-"));
  origin = await makeRepo(path.join(root, "served", "shop"));
  await origin.commit({ "README.md": "shop\n" });
  server = await startGitHttpServer({ root: path.join(root, "served"), token: TOKEN });
  repoUrl = `${server.url}/shop`;
});

afterAll(async () => {
  await server.close();
  rmSync(root, { recursive: true, force: true });
});

const freshMirrors = (name: string, timeoutMs?: number) =>
  new GitMirrors({ dir: path.join(root, name), ...(timeoutMs ? { timeoutMs } : {}) });

describe("https token", () => {
  it("clones with the right token, sent as a header from the environment only", async () => {
    const mirrors = freshMirrors("right");
    const remote = { url: repoUrl, auth: { token: TOKEN } };
    let calls: Awaited<ReturnType<typeof withGitLog>> = [];
    calls = await withGitLog(async () => {
      expect(await mirrors.resolve(remote, "main")).toBe(origin.head);
    });
    const fetch = calls.find((c) => c.argv.includes("fetch"))!;
    expect(fetch).toBeDefined();
    // `--` before the URL, and the token in no argv at all.
    expect(fetch.argv.slice(fetch.argv.indexOf("--"))).toEqual([
      "--",
      repoUrl,
      "+refs/heads/*:refs/heads/*",
      "+refs/tags/*:refs/tags/*",
    ]);
    expect(JSON.stringify(calls.map((c) => c.argv))).not.toContain(TOKEN);
    // Never stored in the mirror either.
    const mirror = mirrors.mirrorPath(remote);
    expect(readFileSync(path.join(mirror, "config"), "utf8")).not.toContain(TOKEN);
    expect(readFileSync(path.join(mirror, "config"), "utf8")).not.toContain(mirrors.secretsOf(remote)[1]!);
    expect(existsSync(path.join(mirror, "FETCH_HEAD"))).toBe(false);
  });

  it("fails with E_GIT on a wrong token without revealing it", async () => {
    const wrong = "wr0ng-t0ken-7b2e9d";
    const mirrors = freshMirrors("wrong");
    const remote = { url: repoUrl, auth: { token: wrong } };
    const lines: string[] = [];
    const err = await mirrors.fetch(remote, (l) => lines.push(l)).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: "E_GIT" });
    const message = (err as Error).message;
    expect(message).toContain("git fetch from");
    for (const secret of mirrors.secretsOf(remote)) {
      expect(message).not.toContain(secret);
      expect(lines.join("\n")).not.toContain(secret);
    }
    expect(existsSync(mirrors.mirrorPath(remote))).toBe(false);
  });

  it("never prompts: without credentials the fetch fails fast, and askpass programs are not run", async () => {
    const marker = path.join(root, "askpass-ran");
    const askpass = path.join(root, "askpass.sh");
    writeFileSync(askpass, `#!/bin/sh\ntouch "${marker}"\necho "${TOKEN}"\n`);
    chmodSync(askpass, 0o755);
    const saved = { GIT_ASKPASS: process.env["GIT_ASKPASS"], SSH_ASKPASS: process.env["SSH_ASKPASS"] };
    process.env["GIT_ASKPASS"] = askpass;
    process.env["SSH_ASKPASS"] = askpass;
    try {
      const mirrors = freshMirrors("anonymous", 60_000);
      const started = Date.now();
      const calls = await withGitLog(async () => {
        await expect(mirrors.fetch({ url: repoUrl, auth: {} })).rejects.toMatchObject({
          code: "E_GIT",
          message: expect.stringContaining("terminal prompts disabled"),
        });
      });
      expect(Date.now() - started).toBeLessThan(10_000);
      expect(existsSync(marker)).toBe(false);
      const fetch = calls.find((c) => c.argv.includes("fetch"))!;
      expect(fetch.env).toMatchObject({
        GIT_TERMINAL_PROMPT: "0",
        GIT_ASKPASS: "",
        SSH_ASKPASS: "",
        GCM_INTERACTIVE: "never",
        LC_ALL: "C",
      });
      expect(fetch.stdin).toBe("/dev/null");
    } finally {
      for (const [key, value] of Object.entries(saved)) {
        if (value === undefined) delete process.env[key];
        else process.env[key] = value;
      }
    }
  });

  it("keeps credentials embedded in the URL out of errors, output and the mirror", async () => {
    const good = freshMirrors("url-creds");
    const withCreds = { url: server.url.replace("http://", `http://deploy:${TOKEN}@`) + "/shop", auth: {} };
    await good.fetch(withCreds);
    expect(readFileSync(path.join(good.mirrorPath(withCreds), "config"), "utf8")).not.toContain(TOKEN);

    const badPassword = "bad-passw0rd-31337";
    const bad = { url: server.url.replace("http://", `http://deploy:${badPassword}@`) + "/shop", auth: {} };
    const lines: string[] = [];
    const err = await good.fetch(bad, (l) => lines.push(l)).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: "E_GIT" });
    expect((err as Error).message).not.toContain(badPassword);
    expect((err as Error).message).toContain(`${server.url}/shop`);
    expect(lines.join("\n")).not.toContain(badPassword);
    expect(good.secretsOf(bad)).toContain(badPassword);
  });
});

describe("timeouts", () => {
  it("kill git and raise E_GIT", async () => {
    const silent = http.createServer(() => {
      // accept and never answer
    });
    await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
    try {
      const { port } = silent.address() as AddressInfo;
      const mirrors = freshMirrors("timeout", 800);
      const remote = { url: `http://127.0.0.1:${port}/shop.git`, auth: {} };
      const started = Date.now();
      await expect(mirrors.fetch(remote)).rejects.toMatchObject({
        code: "E_GIT",
        message: expect.stringContaining("timed out"),
      });
      expect(Date.now() - started).toBeLessThan(5_000);
      expect(existsSync(mirrors.mirrorPath(remote))).toBe(false);
    } finally {
      silent.closeAllConnections();
      silent.close();
    }
  });
});

describe("ssh", () => {
  it("runs ssh through the fixed wrapper with the key and known_hosts as quoted values only", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "turnout-git-ssh-"));
    const savedPath = process.env["PATH"];
    const savedCommand = process.env["GIT_SSH_COMMAND"];
    try {
      const bin = path.join(dir, "bin");
      const argsLog = path.join(dir, "ssh-args");
      const marker = path.join(dir, "marker");
      execFileSync("mkdir", ["-p", bin]);
      // A stand-in `ssh` that records its arguments and fails like an unreachable host.
      writeFileSync(
        path.join(bin, "ssh"),
        `#!/bin/sh\nfor a in "$@"; do printf '%s\\n' "$a"; done > "${argsLog}"\necho "ssh: connect to host: refused" >&2\nexit 255\n`,
      );
      chmodSync(path.join(bin, "ssh"), 0o755);
      process.env["PATH"] = `${bin}:${savedPath}`;
      // An inherited GIT_SSH_COMMAND would take precedence over GIT_SSH: it must be dropped.
      process.env["GIT_SSH_COMMAND"] = `touch ${marker}`;
      const key = path.join(dir, `key with space $(touch ${marker}) \`id\``);
      const knownHosts = path.join(dir, "known hosts");
      const mirrorsDir = path.join(dir, "mirrors");
      const mirrors = new GitMirrors({ dir: mirrorsDir });
      const remote = {
        url: "git@git.example.invalid:acme/shop.git",
        auth: { sshKeyFile: key, knownHostsFile: knownHosts },
      };
      await expect(mirrors.fetch(remote)).rejects.toMatchObject({
        code: "E_GIT",
        message: expect.stringContaining("refused"),
      });
      const args = readFileSync(argsLog, "utf8").split("\n");
      expect(args.slice(0, 14)).toEqual([
        "-F",
        "/dev/null",
        "-o",
        "BatchMode=yes",
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "StrictHostKeyChecking=yes",
        "-i",
        key,
        "-o",
        `UserKnownHostsFile=${knownHosts}`,
        // then what git passes: options for protocol v2, the host and the remote command
        expect.any(String),
        expect.any(String),
      ]);
      expect(args).toContain("git@git.example.invalid");
      expect(existsSync(marker)).toBe(false);
      const wrapper = path.join(mirrorsDir, ".ssh-wrapper");
      expect(statSync(wrapper).mode & 0o777).toBe(0o700);
      expect(readFileSync(wrapper, "utf8")).not.toContain(key);

      // Without a key or known_hosts file, neither option is passed.
      await expect(
        mirrors.fetch({ url: "ssh://git.example.invalid/acme/shop.git", auth: {} }),
      ).rejects.toMatchObject({
        code: "E_GIT",
      });
      const plain = readFileSync(argsLog, "utf8").split("\n");
      expect(plain).not.toContain("-i");
      expect(plain.some((a) => a.startsWith("UserKnownHostsFile="))).toBe(false);
    } finally {
      process.env["PATH"] = savedPath;
      if (savedCommand === undefined) delete process.env["GIT_SSH_COMMAND"];
      else process.env["GIT_SSH_COMMAND"] = savedCommand;
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
