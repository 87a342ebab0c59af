import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { GitMirrors } from "../../src/git/mirrors.js";
import { git, makeRepo, startGitHttpServer } from "../helpers/git-fixtures.js";

let root: string;

beforeEach(() => {
  root = mkdtempSync(path.join(tmpdir(), "turnout-git-ws-"));
});

afterEach(() => rmSync(root, { recursive: true, force: true }));

function filesUnder(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) out.push(...filesUnder(full));
    else out.push(full);
  }
  return out;
}

describe("GitMirrors.createWorkspace", () => {
  it("checks out exactly the commit, detached and clean, and remove() deletes it", async () => {
    const origin = await makeRepo(path.join(root, "origin"));
    const old = await origin.commit({ "app.txt": "v1\n", "gone.txt": "x\n" });
    await origin.commit({ "app.txt": "v2\n", "gone.txt": null, "new.txt": "n\n" });
    const mirrors = new GitMirrors({ dir: path.join(root, "mirrors") });
    const remote = { url: origin.path, auth: {} };
    await mirrors.fetch(remote);

    const dir = path.join(root, "workspaces", "d1");
    const ws = await mirrors.createWorkspace(remote, old, dir);
    expect(ws.path).toBe(dir);
    expect(readFileSync(path.join(dir, "app.txt"), "utf8")).toBe("v1\n");
    expect(existsSync(path.join(dir, "gone.txt"))).toBe(true);
    expect(existsSync(path.join(dir, "new.txt"))).toBe(false);
    expect(await git(dir, "rev-parse", "HEAD")).toBe(old);
    await expect(git(dir, "symbolic-ref", "-q", "HEAD")).rejects.toThrow(); // detached
    expect(await git(dir, "status", "--porcelain", "--ignored", "--untracked-files=all")).toBe("");
    // The origin, not the mirror, is what the workspace calls its remote.
    expect(await git(dir, "config", "remote.origin.url")).toBe(origin.path);

    await ws.remove();
    expect(existsSync(dir)).toBe(false);
    await ws.remove(); // idempotent
  });

  it("fetches a commit the mirror does not have yet, and refuses unknown or malformed SHAs", async () => {
    const origin = await makeRepo(path.join(root, "origin"));
    await origin.commit({ "a.txt": "1\n" });
    const mirrors = new GitMirrors({ dir: path.join(root, "mirrors") });
    const remote = { url: origin.path, auth: {} };
    await mirrors.fetch(remote);
    const later = await origin.commit({ "a.txt": "2\n" });
    const ws = await mirrors.createWorkspace(remote, later, path.join(root, "w-later"));
    expect(readFileSync(path.join(ws.path, "a.txt"), "utf8")).toBe("2\n");

    await expect(
      mirrors.createWorkspace(remote, "1".repeat(40), path.join(root, "w-unknown")),
    ).rejects.toMatchObject({ code: "E_REF_NOT_FOUND" });
    expect(existsSync(path.join(root, "w-unknown"))).toBe(false);
    for (const bad of ["main", later.slice(0, 7), `--upload-pack=x${later}`, `${later}\n`]) {
      await expect(mirrors.createWorkspace(remote, bad, path.join(root, "w-bad"))).rejects.toMatchObject({
        code: "E_INVALID_REF",
      });
    }
    expect(existsSync(path.join(root, "w-bad"))).toBe(false);
  });

  it("is a working repository: history, tags for git describe, and the real origin", async () => {
    const origin = await makeRepo(path.join(root, "origin"));
    await origin.commit({ "a.txt": "1\n" });
    await origin.tag("v1.0.0", true);
    await origin.commit({ "a.txt": "2\n" });
    await origin.tag("light");
    const sha = await origin.commit({ "a.txt": "3\n" });
    const mirrors = new GitMirrors({ dir: path.join(root, "mirrors") });
    const remote = { url: origin.path, auth: {} };
    await mirrors.fetch(remote);
    // Pack the mirror's refs so both packed and loose tags are exercised.
    await git(mirrors.mirrorPath(remote), "pack-refs", "--all");
    await origin.tag("v1.1.0", true);
    await mirrors.fetch(remote);
    const ws = await mirrors.createWorkspace(remote, sha, path.join(root, "w"));
    expect(await git(ws.path, "describe", "--tags")).toMatch(/^v1\.1\.0$/);
    expect(await git(ws.path, "describe", "--tags", "HEAD~1")).toBe("light");
    expect(await git(ws.path, "describe", "HEAD~2")).toBe("v1.0.0");
    expect(await git(ws.path, "rev-list", "--count", "HEAD")).toBe("3");
    expect(await git(ws.path, "remote", "get-url", "origin")).toBe(origin.path);
    expect(await git(ws.path, "status", "--porcelain", "--ignored")).toBe("");
  });

  it("refuses a directory that already exists and leaves it alone", async () => {
    const origin = await makeRepo(path.join(root, "origin"));
    const sha = await origin.commit({ "a.txt": "1\n" });
    const mirrors = new GitMirrors({ dir: path.join(root, "mirrors") });
    const dir = path.join(root, "taken");
    mkdirSync(dir);
    await expect(mirrors.createWorkspace({ url: origin.path, auth: {} }, sha, dir)).rejects.toMatchObject({
      code: "E_CONFLICT",
    });
    expect(statSync(dir).isDirectory()).toBe(true);
  });

  it("includes submodules, recursively, at their pinned commits, with relative URLs", async () => {
    const deep = await makeRepo(path.join(root, "repos", "deep"));
    const deepPinned = await deep.commit({ "deep.txt": "deep v1\n" });
    const lib = await makeRepo(path.join(root, "repos", "lib"));
    await lib.commit({ "lib.txt": "lib v1\n" });
    await lib.addSubmodule("../deep", "vendor/deep");
    const libPinned = lib.head;
    const app = await makeRepo(path.join(root, "repos", "app"));
    await app.commit({ "app.txt": "app\n" });
    // Relative: resolved against the origin's URL, not the mirror's path.
    const sha = await app.addSubmodule("../lib", "lib");
    // Later commits in the submodules must not leak into the workspace.
    await deep.commit({ "deep.txt": "deep v2\n" });
    await lib.commit({ "lib.txt": "lib v2\n" });

    const mirrors = new GitMirrors({ dir: path.join(root, "mirrors") });
    const remote = { url: app.path, auth: {} };
    const lines: string[] = [];
    const ws = await mirrors.createWorkspace(remote, sha, path.join(root, "ws"), (l) => lines.push(l));
    expect(readFileSync(path.join(ws.path, "lib", "lib.txt"), "utf8")).toBe("lib v1\n");
    expect(readFileSync(path.join(ws.path, "lib", "vendor", "deep", "deep.txt"), "utf8")).toBe("deep v1\n");
    expect(await git(path.join(ws.path, "lib"), "rev-parse", "HEAD")).toBe(libPinned);
    expect(await git(path.join(ws.path, "lib", "vendor", "deep"), "rev-parse", "HEAD")).toBe(deepPinned);
    expect(await git(ws.path, "status", "--porcelain", "--untracked-files=all")).toBe("");
    expect(lines).toContain("updating submodules");
    await ws.remove();
    expect(existsSync(ws.path)).toBe(false);
  });

  it("fetches https submodules with the origin's token, sends it to no other host, and stores it nowhere", async () => {
    const token = "ws-t0ken-93b1d0c7";
    const served = path.join(root, "served");
    const elsewhere = path.join(root, "elsewhere");
    const lib = await makeRepo(path.join(served, "lib"));
    await lib.commit({ "lib.txt": "private lib\n" });
    const pub = await makeRepo(path.join(elsewhere, "pub"));
    await pub.commit({ "pub.txt": "public\n" });
    const secure = await startGitHttpServer({ root: served, token });
    const open = await startGitHttpServer({ root: elsewhere });
    try {
      const app = await makeRepo(path.join(served, "app"));
      await app.commit({ "app.txt": "app\n" });
      await app.addSubmodule("../lib", "lib");
      // A submodule on another host: it must be fetched without our token.
      await app.addSubmodule(pub.path, "pub");
      await app.git("config", "--file", ".gitmodules", "submodule.pub.url", `${open.url}/pub`);
      const sha = await app.commit({}, "point pub at its host");

      const mirrors = new GitMirrors({ dir: path.join(root, "mirrors") });
      const remote = { url: `${secure.url}/app`, auth: { token } };
      const ws = await mirrors.createWorkspace(remote, sha, path.join(root, "ws"));
      expect(readFileSync(path.join(ws.path, "lib", "lib.txt"), "utf8")).toBe("private lib\n");
      expect(readFileSync(path.join(ws.path, "pub", "pub.txt"), "utf8")).toBe("public\n");
      expect(secure.requests.some((r) => r.path.startsWith("/lib") && r.status === 200)).toBe(true);
      expect(open.requests.length).toBeGreaterThan(0);
      expect(open.requests.every((r) => !r.authorization)).toBe(true);

      const secrets = mirrors.secretsOf(remote);
      for (const file of filesUnder(path.join(ws.path, ".git"))) {
        const text = readFileSync(file, "latin1");
        for (const secret of secrets) expect(text.includes(secret), file).toBe(false);
      }
      for (const file of filesUnder(mirrors.mirrorPath(remote))) {
        const text = readFileSync(file, "latin1");
        for (const secret of secrets) expect(text.includes(secret), file).toBe(false);
      }
      // Without the token the same submodule cannot be had: the token is what made it work.
      const anonymous = new GitMirrors({ dir: path.join(root, "mirrors-anon") });
      await expect(
        anonymous.createWorkspace({ url: `${secure.url}/app`, auth: {} }, sha, path.join(root, "ws-anon")),
      ).rejects.toMatchObject({ code: "E_GIT" });
      expect(existsSync(path.join(root, "ws-anon"))).toBe(false);
    } finally {
      await secure.close();
      await open.close();
    }
  });
});
