import { createHash } from "node:crypto";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GitMirrors } from "../../src/git/mirrors.js";
import { git, makeRepo, type TestRepo } from "../helpers/git-fixtures.js";

let root: string;
let origin: TestRepo;
let mirrors: GitMirrors;
let first: string;
let second: string;
let onFeature: string;
const remote = () => ({ url: origin.path, auth: {} });

beforeAll(async () => {
  root = mkdtempSync(path.join(tmpdir(), "turnout-git-resolve-"));
  origin = await makeRepo(path.join(root, "origin"));
  first = await origin.commit({ "a.txt": "1\n" });
  await origin.tag("v1", true);
  await origin.tag("light");
  second = await origin.commit({ "a.txt": "2\n" });
  // A tag called like the branch, on an older commit: the branch must win.
  await origin.tag("main", false, first);
  await origin.checkout("feature/x");
  onFeature = await origin.commit({ "b.txt": "f\n" });
  await origin.checkout("main");
  mirrors = new GitMirrors({ dir: path.join(root, "mirrors") });
});

afterAll(() => rmSync(root, { recursive: true, force: true }));

describe("GitMirrors.resolve", () => {
  it("resolves a branch, also one with a slash", async () => {
    expect(await mirrors.resolve(remote(), "main")).toBe(second);
    expect(await mirrors.resolve(remote(), "feature/x")).toBe(onFeature);
  });

  it("peels an annotated tag to its commit and resolves a lightweight tag", async () => {
    const tagObject = await git(origin.path, "rev-parse", "v1");
    expect(tagObject).not.toBe(first); // really an annotated tag object
    expect(await mirrors.resolve(remote(), "v1")).toBe(first);
    expect(await mirrors.resolve(remote(), "light")).toBe(first);
  });

  it("prefers the branch when a branch and a tag share a name", async () => {
    expect(await mirrors.resolve(remote(), "main")).toBe(second);
    expect(await mirrors.resolve(remote(), "refs/tags/main")).toBe(first);
    expect(await mirrors.resolve(remote(), "refs/heads/main")).toBe(second);
  });

  it("resolves full and short SHAs (any case)", async () => {
    expect(await mirrors.resolve(remote(), first)).toBe(first);
    expect(await mirrors.resolve(remote(), first.slice(0, 7))).toBe(first);
    expect(await mirrors.resolve(remote(), second.slice(0, 12).toUpperCase())).toBe(second);
  });

  it("refuses unknown refs, too-short SHAs and non-commit objects with E_REF_NOT_FOUND", async () => {
    for (const ref of ["nope", "feature/y", "0000000000000000000000000000000000000000", first.slice(0, 6)]) {
      await expect(mirrors.resolve(remote(), ref)).rejects.toMatchObject({ code: "E_REF_NOT_FOUND" });
    }
    const blob = await git(origin.path, "rev-parse", "main:a.txt");
    await expect(mirrors.resolve(remote(), blob)).rejects.toMatchObject({ code: "E_REF_NOT_FOUND" });
  });

  it("refuses an ambiguous short SHA with E_INVALID_REF", async () => {
    // Two commits whose SHAs share 7 hex digits, found by a birthday search.
    const { prefix, bodies } = collidingCommits();
    const repo = await makeRepo(path.join(root, "ambiguous"));
    await repo.commit({ "x.txt": "x\n" });
    await git(repo.path, "hash-object", "-w", "-t", "tree", "/dev/null");
    for (const [i, body] of bodies.entries()) {
      const file = path.join(root, `commit-${i}`);
      writeFileSync(file, body);
      const sha = await git(repo.path, "hash-object", "-w", "-t", "commit", "--", file);
      expect(sha.startsWith(prefix)).toBe(true);
      await git(repo.path, "update-ref", `refs/heads/c${i}`, sha);
    }
    const r = { url: repo.path, auth: {} };
    const shas = await Promise.all(bodies.map((_, i) => git(repo.path, "rev-parse", `refs/heads/c${i}`)));
    const error = await mirrors.resolve(r, prefix).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: "E_INVALID_REF", message: expect.stringContaining("ambiguous") });
    // It says which commits it could be, in the message and in the details.
    const { message, details } = error as { message: string; details: { candidates: { sha: string }[] } };
    for (const sha of shas) expect(message).toContain(sha.slice(0, 12));
    expect(details.candidates.map((c) => c.sha).sort()).toEqual([...shas].sort());
    expect(details.candidates[0]).toMatchObject({
      date: "2023-11-14",
      subject: expect.stringMatching(/^noise \d+$/),
    });
    // With ancestry steps the same ambiguity is reported, not a missing ref.
    await expect(mirrors.resolve(r, `${prefix}~1`)).rejects.toMatchObject({ code: "E_INVALID_REF" });
    // One more digit usually tells them apart; at worst a full SHA always does.
    const full = await git(repo.path, "rev-parse", "refs/heads/c0");
    expect(await mirrors.resolveLocal(r, full)).toBe(full);
  });

  it("resolveLocal does not fetch: a new commit is only seen after fetch()", async () => {
    await mirrors.fetch(remote());
    const third = await origin.commit({ "a.txt": "3\n" });
    expect(await mirrors.resolveLocal(remote(), "main")).toBe(second);
    expect(await mirrors.resolve(remote(), "main")).toBe(third);
    expect(await mirrors.resolveLocal(remote(), "main")).toBe(third);
    second = third;
  });

  it("resolveLocal clones first when there is no mirror yet", async () => {
    const fresh = new GitMirrors({ dir: path.join(root, "fresh-mirrors") });
    expect(await fresh.resolveLocal(remote(), "v1")).toBe(first);
  });
});

describe("ancestry steps: main~1, v1.2^", () => {
  let repo: TestRepo;
  let c1: string;
  let c2: string;
  let c3: string;
  let side: string;
  let merge: string;
  const r = () => ({ url: repo.path, auth: {} });

  beforeAll(async () => {
    repo = await makeRepo(path.join(root, "steps"));
    c1 = await repo.commit({ "a.txt": "1\n" });
    c2 = await repo.commit({ "a.txt": "2\n" });
    c3 = await repo.commit({ "a.txt": "3\n" });
    await repo.tag("v1.2", true);
    // A tag named like the branch, elsewhere: steps walk back from the branch, as the ref alone would.
    await repo.tag("main", false, c1);
    await repo.checkout("side");
    side = await repo.commit({ "b.txt": "side\n" });
    await repo.checkout("main");
    await repo.git("merge", "--quiet", "--no-ff", "-m", "merge side", "side");
    merge = await repo.git("rev-parse", "HEAD");
  });

  it("walks back from a branch, a tag or a SHA", async () => {
    expect(await mirrors.resolve(r(), "main~1")).toBe(c3);
    expect(await mirrors.resolve(r(), "main~3")).toBe(c1);
    expect(await mirrors.resolve(r(), "main^")).toBe(c3);
    expect(await mirrors.resolve(r(), "main^2")).toBe(side);
    expect(await mirrors.resolve(r(), "main^2~1")).toBe(c3);
    expect(await mirrors.resolve(r(), "main~~")).toBe(c2);
    expect(await mirrors.resolve(r(), "main~0")).toBe(merge);
    expect(await mirrors.resolve(r(), "v1.2^")).toBe(c2);
    expect(await mirrors.resolve(r(), "v1.2~2")).toBe(c1);
    expect(await mirrors.resolve(r(), "refs/tags/main~0")).toBe(c1);
    expect(await mirrors.resolve(r(), `${c3.slice(0, 9)}~1`)).toBe(c2);
  });

  it("says so when the commit has no such ancestor", async () => {
    await expect(mirrors.resolve(r(), "v1.2~9")).rejects.toMatchObject({
      code: "E_REF_NOT_FOUND",
      message: expect.stringContaining(`v1.2 is ${c3.slice(0, 12)}, which has no ancestor ~9`),
    });
    await expect(mirrors.resolve(r(), "main^3")).rejects.toMatchObject({ code: "E_REF_NOT_FOUND" });
    await expect(mirrors.resolve(r(), "nope~1")).rejects.toMatchObject({
      code: "E_REF_NOT_FOUND",
      message: expect.stringContaining("no such branch, tag or commit"),
    });
  });

  it("refuses HEAD, which means nothing in a mirror", async () => {
    for (const ref of ["HEAD", "HEAD~2", "HEAD^"]) {
      await expect(mirrors.resolve(r(), ref)).rejects.toMatchObject({
        code: "E_INVALID_REF",
        message: expect.stringContaining("HEAD"),
      });
    }
  });
});

describe("hostile refs", () => {
  const hostile = (marker: string) => [
    `--upload-pack=touch ${marker}`,
    "-x",
    `$(touch ${marker})`,
    `\`touch ${marker}\``,
    "`id`",
    "a..b",
    "../../etc",
    "main\nrm",
    "main\u0007",
    "ma in",
    "",
    "main;touch",
    "HEAD@{1}",
    "HEAD~2",
    "main^{commit}",
    "main^{/fix}",
    "main~1:etc/passwd",
    "main~-1",
    "main~1..main",
    "main~1 --upload-pack=x",
    `main~1$(touch ${marker})`,
    "~1",
    "^main",
    "main~12345",
  ];

  it("are refused with E_INVALID_REF before any git process runs", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "turnout-git-hostile-"));
    try {
      const marker = path.join(dir, "marker");
      const mirrorDir = path.join(dir, "mirrors");
      const fresh = new GitMirrors({ dir: mirrorDir });
      for (const ref of hostile(marker)) {
        await expect(fresh.resolve(remote(), ref), JSON.stringify(ref)).rejects.toMatchObject({
          code: "E_INVALID_REF",
        });
        await expect(fresh.resolveLocal(remote(), ref)).rejects.toMatchObject({ code: "E_INVALID_REF" });
      }
      expect(existsSync(marker)).toBe(false);
      // No mirror was even created: git never ran for any of them.
      expect(existsSync(mirrorDir)).toBe(false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

function collidingCommits(): { prefix: string; bodies: string[] } {
  const seen = new Map<string, string>();
  const tree = "4b825dc642cb6eb9a060e54bf8d69288fbee4904";
  for (let i = 0; ; i++) {
    const body = `tree ${tree}\nauthor t <t@example.com> 1700000000 +0000\ncommitter t <t@example.com> 1700000000 +0000\n\nnoise ${i}\n`;
    const sha = createHash("sha1")
      .update(`commit ${Buffer.byteLength(body)}\0${body}`)
      .digest("hex");
    const prefix = sha.slice(0, 7);
    const other = seen.get(prefix);
    if (other !== undefined) return { prefix, bodies: [other, body] };
    seen.set(prefix, body);
  }
}
