import { createHash } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { deflateSync } from "node:zlib";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { GIT_GC_DEFAULTS, maintenanceDue } from "../../src/git/maintenance-due.js";
import { GitMirrors } from "../../src/git/mirrors.js";
import { git, makeRepo, type TestRepo } from "../helpers/git-fixtures.js";
import { withGitLog } from "./git-spy.js";

let root: string;
let origin: TestRepo;
let mirrorsDir: string;

beforeEach(async () => {
  root = mkdtempSync(path.join(tmpdir(), "turnout-git-mirrors-"));
  origin = await makeRepo(path.join(root, "origin"));
  await origin.commit({ "README.md": "hello\n" });
  mirrorsDir = path.join(root, "mirrors");
});

afterEach(() => rmSync(root, { recursive: true, force: true }));

describe("GitMirrors.fetch", () => {
  it("clones a bare mirror named by a hash of the URL, holding branches and tags", async () => {
    await origin.tag("v1", true);
    await origin.branch("release");
    const mirrors = new GitMirrors({ dir: mirrorsDir });
    const remote = { url: origin.path, auth: {} };
    await mirrors.fetch(remote);
    const mirror = mirrors.mirrorPath(remote);
    expect(path.dirname(mirror)).toBe(mirrorsDir);
    expect(path.basename(mirror)).toMatch(/^[0-9a-f]{24}\.git$/);
    expect(path.basename(mirror)).not.toContain("origin");
    expect(await git(mirror, "rev-parse", "--is-bare-repository")).toBe("true");
    const refs = (await git(mirror, "for-each-ref", "--format=%(refname)")).split("\n").sort();
    expect(refs).toEqual(["refs/heads/main", "refs/heads/release", "refs/tags/v1"]);
    // No leftovers of the temporary clone.
    expect(readdirSync(mirrorsDir).filter((e) => e.startsWith(".tmp-"))).toEqual([]);
  });

  it("fetches incrementally: the mirror is kept and picks up new commits and deletions", async () => {
    await origin.branch("doomed");
    const mirrors = new GitMirrors({ dir: mirrorsDir });
    const remote = { url: origin.path, auth: {} };
    await mirrors.fetch(remote);
    const mirror = mirrors.mirrorPath(remote);
    const marker = path.join(mirror, "turnout-marker");
    writeFileSync(marker, "still here");
    const inode = statSync(mirror).ino;

    const next = await origin.commit({ "README.md": "hello again\n" });
    await git(origin.path, "branch", "-D", "doomed");
    const lines: string[] = [];
    await mirrors.fetch(remote, (line) => lines.push(line));

    expect(existsSync(marker)).toBe(true);
    expect(statSync(mirror).ino).toBe(inode);
    expect(await git(mirror, "rev-parse", "refs/heads/main")).toBe(next);
    expect(await git(mirror, "for-each-ref", "--format=%(refname)", "refs/heads/doomed")).toBe("");
    expect(lines.join("\n")).toContain("fetching");
    expect(lines.join("\n")).not.toContain("cloning");
  });

  it("serialises concurrent fetches of one repository and shares the queued one", async () => {
    const mirrors = new GitMirrors({ dir: mirrorsDir });
    const remote = { url: origin.path, auth: {} };
    await mirrors.fetch(remote);
    const log = await withGitLog(async () => {
      await Promise.all(Array.from({ length: 6 }, () => mirrors.fetch(remote)));
    });
    const fetches = log.filter((entry) => entry.argv[0] === "fetch");
    // One running, one shared by everyone who arrived while it ran.
    expect(fetches.length).toBeGreaterThanOrEqual(1);
    expect(fetches.length).toBeLessThanOrEqual(2);
  });

  it("a new commit pushed while a fetch runs is seen by callers that arrived after it started", async () => {
    const mirrors = new GitMirrors({ dir: mirrorsDir });
    const remote = { url: origin.path, auth: {} };
    await mirrors.fetch(remote);
    const firstFetch = mirrors.fetch(remote);
    const next = await origin.commit({ "README.md": "later\n" });
    const sha = await mirrors.resolve(remote, "main");
    await firstFetch;
    expect(sha).toBe(next);
  });

  it("a failed first clone leaves neither a mirror nor a temporary directory", async () => {
    const mirrors = new GitMirrors({ dir: mirrorsDir });
    const remote = { url: path.join(root, "does-not-exist"), auth: {} };
    await expect(mirrors.fetch(remote)).rejects.toMatchObject({
      code: "E_GIT",
      message: expect.stringContaining("git fetch from"),
    });
    expect(existsSync(mirrors.mirrorPath(remote))).toBe(false);
    expect(readdirSync(mirrorsDir).filter((e) => e.startsWith(".tmp-"))).toEqual([]);
  });

  it("a resolve on an up-to-date mirror costs two git invocations", async () => {
    const mirrors = new GitMirrors({ dir: mirrorsDir });
    const remote = { url: origin.path, auth: {} };
    await mirrors.fetch(remote);
    const log = await withGitLog(async () => {
      expect(await mirrors.resolve(remote, "main")).toBe(origin.head);
    });
    expect(log.map((entry) => entry.argv.find((a) => !a.startsWith("-") && !a.includes("=")))).toEqual([
      "fetch",
      "cat-file",
    ]);
  });

  it("refuses transport helpers and option-like URLs without running git", async () => {
    const mirrors = new GitMirrors({ dir: mirrorsDir });
    const marker = path.join(root, "pwned");
    for (const url of [`ext::sh -c touch% ${marker}`, "--upload-pack=touch /tmp/x", "fd::17"]) {
      await expect(mirrors.fetch({ url, auth: {} })).rejects.toMatchObject({ code: "E_CONFIG" });
    }
    expect(existsSync(marker)).toBe(false);
    expect(existsSync(mirrorsDir)).toBe(false);
  });
});

describe("GitMirrors.treeReader and beforeFetch", () => {
  it("reads a commit the mirror lacks by fetching it first, after the beforeFetch hook ran", async () => {
    const mirrors = new GitMirrors({ dir: mirrorsDir });
    const remote = { url: origin.path, auth: {} };
    await mirrors.fetch(remote);
    const hooked: string[] = [];
    mirrors.beforeFetch(async (url) => {
      hooked.push(url);
    });
    // Another server resolved this commit: this mirror has never seen it.
    const later = await origin.commit({ "NEW.md": "new\n" });
    const entries = await mirrors.treeReader(remote, later).list(null);
    expect(entries.map((e) => e.path).sort()).toEqual(["NEW.md", "README.md"]);
    expect(hooked).toEqual([origin.path]);
    // A commit it holds is read without fetching again.
    await mirrors.treeReader(remote, later).list(null);
    expect(hooked).toHaveLength(1);
  });
});

describe("GitMirrors: processes per resolve", () => {
  /** The git subcommand of a spied call (the first argument that is not an option or its value). */
  const subcommand = (argv: string[]) => argv.filter((a, i) => argv[i - 1] !== "-c" && !a.startsWith("-"))[0];

  it("resolves a full SHA the mirror holds without fetching; an unknown one is fetched", async () => {
    const mirrors = new GitMirrors({ dir: mirrorsDir });
    const remote = { url: origin.path, auth: {} };
    const first = origin.head;
    await mirrors.fetch(remote);
    const later = await origin.commit({ "README.md": "later\n" });
    const log = await withGitLog(async () => {
      expect(await mirrors.resolve(remote, first)).toBe(first);
    });
    expect(log.map((call) => subcommand(call.argv))).not.toContain("fetch");
    const unknown = "0123456789abcdef0123456789abcdef01234567";
    const fetched = await withGitLog(async () => {
      expect(await mirrors.resolve(remote, later)).toBe(later);
      // A full SHA no one has: still refused, after a fetch and a look by a fresh process.
      await expect(mirrors.resolve(remote, unknown)).rejects.toMatchObject({ code: "E_REF_NOT_FOUND" });
    });
    // Asked of the mirror's long-lived cat-file before and after each fetch: no other process
    // (no maintenance either: a one-commit fetch leaves git's gc nothing to do).
    expect(fetched.map((call) => subcommand(call.argv))).toEqual(["fetch", "fetch", "cat-file"]);
    mirrors.close();
  });

  it("runs git's maintenance after a fetch that brought something when git's thresholds say it is due", async () => {
    const mirrors = new GitMirrors({ dir: mirrorsDir });
    const remote = { url: origin.path, auth: {} };
    await mirrors.fetch(remote);
    await origin.commit({ "README.md": "small\n" });
    // A fetch of a few objects: git's gc would have nothing to do, so it is not started.
    const quiet = await withGitLog(async () => {
      await mirrors.fetch(remote);
    });
    expect(quiet.map((call) => subcommand(call.argv))).toEqual(["fetch"]);
    // More loose objects than git's gc.auto allows (git estimates them from objects/17).
    expect(await maintenanceDue(mirrors.mirrorPath(remote))).toBe(false);
    writeLooseBlobs(mirrors.mirrorPath(remote), "17", Math.ceil(GIT_GC_DEFAULTS.looseObjects / 256) + 1);
    expect(await maintenanceDue(mirrors.mirrorPath(remote))).toBe(true);
    await origin.commit({ "README.md": "new\n" });
    const log = await withGitLog(async () => {
      await mirrors.fetch(remote); // brings the commit: maintenance follows
      await mirrors.fetch(remote); // waits for that maintenance; brings nothing
      await mirrors.fetch(remote); // nothing again
    });
    expect(log.map((call) => subcommand(call.argv))).toEqual(["fetch", "maintenance", "fetch", "fetch"]);
    // git's own maintenance inside a fetch is off: it would run after every fetch.
    for (const call of log.filter((c) => subcommand(c.argv) === "fetch")) {
      expect(call.argv).toContain("--no-auto-maintenance");
    }
    expect(log.find((c) => subcommand(c.argv) === "maintenance")!.argv).toEqual([
      "maintenance",
      "run",
      "--auto",
      "--quiet",
    ]);
  });

  it("resolves branch names in one long-lived git process that sees every fetch's changes", async () => {
    const mirrors = new GitMirrors({ dir: mirrorsDir });
    const remote = { url: origin.path, auth: {} };
    await origin.branch("feature");
    await mirrors.fetch(remote);
    const seen: string[] = [];
    const log = await withGitLog(async () => {
      seen.push(await mirrors.resolve(remote, "main"));
      const next = await origin.commit({ "README.md": "next\n" });
      seen.push(await mirrors.resolve(remote, "main"));
      expect(seen).toEqual([expect.any(String), next]);
      // Refs packed by maintenance, and a branch deleted at the origin.
      await git(mirrors.mirrorPath(remote), "pack-refs", "--all");
      const packedNext = await origin.commit({ "README.md": "after packing\n" });
      expect(await mirrors.resolve(remote, "main")).toBe(packedNext);
      expect(await mirrors.resolve(remote, "feature")).toMatch(/^[0-9a-f]{40}$/);
      await git(origin.path, "branch", "-D", "feature");
      await expect(mirrors.resolve(remote, "feature")).rejects.toMatchObject({ code: "E_REF_NOT_FOUND" });
    });
    // One cat-file for all of it; the "not found" was asked again of a new process to be sure.
    // (Counted over every argument seen: a maintenance running beside the test's own git commands
    // can interleave its lines with theirs in the spy's log.)
    expect(log.flatMap((call) => call.argv).filter((arg) => arg === "cat-file")).toHaveLength(2);
    mirrors.close();
  });
});

/** Writes `count` real loose blobs whose ids start with `prefix` (found by trying contents) into a repository. */
function writeLooseBlobs(gitDir: string, prefix: string, count: number): void {
  let written = 0;
  for (let n = 0; written < count; n++) {
    const content = Buffer.from(`filler ${n}\n`);
    const object = Buffer.concat([Buffer.from(`blob ${content.length}\0`), content]);
    const id = createHash("sha1").update(object).digest("hex");
    if (!id.startsWith(prefix)) continue;
    mkdirSync(path.join(gitDir, "objects", prefix), { recursive: true });
    writeFileSync(path.join(gitDir, "objects", prefix, id.slice(2)), deflateSync(object));
    written++;
  }
}
