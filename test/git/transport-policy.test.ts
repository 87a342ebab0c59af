import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SecretMasker } from "../../src/domain/secrets.js";
import { baseGitEnv, withTransportPolicy } from "../../src/git/git-env.js";
import { runGit } from "../../src/git/run-git.js";
import { git, makeRepo, type TestRepo } from "../helpers/git-fixtures.js";

/**
 * Defence in depth: whatever URL reaches git and whatever environment the
 * caller built, the git layer refuses transport helpers itself. These calls
 * go straight to runGit, past the URL check that normally stops such URLs
 * first (remote-url.ts), as a bug or a repository's own submodule URL would.
 */
let root: string;
let mirror: string;
let origin: TestRepo;

beforeAll(async () => {
  root = mkdtempSync(path.join(tmpdir(), "turnout-transport-policy-"));
  origin = await makeRepo(path.join(root, "origin"));
  await origin.commit({ "README.md": "hello\n" });
  mirror = path.join(root, "mirror.git");
  await git(root, "init", "--quiet", "--bare", mirror);
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

const fetchFrom = (url: string, env: Record<string, string> = baseGitEnv()) =>
  runGit(["fetch", "--quiet", "--", url, "+refs/heads/*:refs/heads/*"], {
    what: "test fetch",
    cwd: mirror,
    env,
    timeoutMs: 20_000,
    masker: new SecretMasker([]),
  });

describe("git's transports at run time", () => {
  it("refuses ext:: even when the environment git is given allows it, and runs nothing", async () => {
    const marker = path.join(root, "ext-ran");
    const hostile = {
      ...baseGitEnv(),
      GIT_ALLOW_PROTOCOL: "ext",
      GIT_CONFIG_PARAMETERS: "'protocol.ext.allow'='always'",
    };
    await expect(fetchFrom(`ext::sh -c touch% ${marker}`, hostile)).rejects.toMatchObject({
      code: "E_GIT",
      message: expect.stringContaining("transport 'ext' not allowed"),
    });
    expect(existsSync(marker)).toBe(false);
  });

  it("refuses fd:: and unknown transport helpers, which git allows by default", async () => {
    await expect(fetchFrom("fd::0")).rejects.toMatchObject({
      message: expect.stringContaining("transport 'fd' not allowed"),
    });
    await expect(fetchFrom("turnout-test::x")).rejects.toMatchObject({
      message: expect.stringContaining("transport 'turnout-test' not allowed"),
    });
  });

  it("still fetches from the transports Turnout allows (here a local path)", async () => {
    await fetchFrom(origin.path);
    expect(await git(mirror, "rev-parse", "refs/heads/main")).toBe(origin.head);
  });

  it("appends the policy to configuration the caller set, and drops what would override it", () => {
    const env = withTransportPolicy({
      GIT_CONFIG_COUNT: "1",
      GIT_CONFIG_KEY_0: "http.https://h/.extraHeader",
      GIT_CONFIG_VALUE_0: "Authorization: Basic x",
      GIT_ALLOW_PROTOCOL: "ext",
      GIT_PROTOCOL_FROM_USER: "0",
      GIT_CONFIG_PARAMETERS: "'protocol.ext.allow'='always'",
    });
    expect(env["GIT_CONFIG_KEY_0"]).toBe("http.https://h/.extraHeader");
    expect(env["GIT_CONFIG_KEY_1"]).toBe("protocol.allow");
    expect(env["GIT_CONFIG_VALUE_1"]).toBe("never");
    const allowed = Object.keys(env)
      .filter((k) => k.startsWith("GIT_CONFIG_KEY_"))
      .map((k) => `${env[k]}=${env[k.replace("KEY", "VALUE")]}`);
    expect(allowed).toContain("protocol.file.allow=user");
    expect(allowed.some((a) => a.startsWith("protocol.ext"))).toBe(false);
    expect(env["GIT_CONFIG_COUNT"]).toBe(String(allowed.length));
    expect(env["GIT_ALLOW_PROTOCOL"]).toBeUndefined();
    expect(env["GIT_PROTOCOL_FROM_USER"]).toBeUndefined();
    expect(env["GIT_CONFIG_PARAMETERS"]).toBeUndefined();
  });
});
