import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ArtifactStore } from "../../src/artifacts/artifact-store.js";
import { canonicalManifest, manifestDigest } from "../../src/domain/artifact.js";
import { blobFiles, makeTree, tempDir, tmpFiles } from "./helpers.js";

let root: string;
let cleanup: () => Promise<void>;
let storeDir: string;
let store: ArtifactStore;

beforeEach(async () => {
  ({ dir: root, cleanup } = await tempDir("artifacts"));
  storeDir = path.join(root, "store");
  store = new ArtifactStore({ dir: storeDir });
});
afterEach(() => cleanup());

const sha = (text: string) => createHash("sha256").update(text).digest("hex");

async function sampleTree(dir: string): Promise<void> {
  await makeTree(dir, {
    "README.md": "hello\n",
    "bin/run": { content: "#!/bin/sh\necho run\n", mode: 0o750 },
    "lib/a/deep/one.js": "same content\n",
    "lib/b/two.js": "same content\n",
    "lib/current": { link: "a/deep" },
    empty: { dir: true },
    ".git/HEAD": "ref: refs/heads/main\n",
  });
}

describe("ArtifactStore.fromDirectory", () => {
  it("records dirs, files with the executable bit only, symlinks as links; skips the top .git", async () => {
    const tree = path.join(root, "tree");
    await sampleTree(tree);
    const stored = await store.fromDirectory(tree);

    expect(stored.manifest.entries).toEqual([
      { path: "README.md", type: "file", mode: 0o644, size: 6, sha256: sha("hello\n") },
      { path: "bin", type: "dir", mode: 0o755 },
      { path: "bin/run", type: "file", mode: 0o755, size: 19, sha256: sha("#!/bin/sh\necho run\n") },
      { path: "empty", type: "dir", mode: 0o755 },
      { path: "lib", type: "dir", mode: 0o755 },
      { path: "lib/a", type: "dir", mode: 0o755 },
      { path: "lib/a/deep", type: "dir", mode: 0o755 },
      { path: "lib/a/deep/one.js", type: "file", mode: 0o644, size: 13, sha256: sha("same content\n") },
      { path: "lib/b", type: "dir", mode: 0o755 },
      { path: "lib/b/two.js", type: "file", mode: 0o644, size: 13, sha256: sha("same content\n") },
      { path: "lib/current", type: "symlink", target: "a/deep" },
    ]);
    expect(stored.files).toBe(4);
    expect(stored.bytes).toBe(6 + 19 + 13 + 13);
    expect(stored.digest).toBe(manifestDigest(stored.manifest));
  });

  it("stores identical content once, and the manifest as a blob named by the digest", async () => {
    const tree = path.join(root, "tree");
    await sampleTree(tree);
    const stored = await store.fromDirectory(tree);
    // README, bin/run, the shared content, the manifest: .git/HEAD is not stored.
    expect(await blobFiles(storeDir)).toEqual(
      [sha("hello\n"), sha("#!/bin/sh\necho run\n"), sha("same content\n"), stored.digest].sort(),
    );
    expect(await readFile(store.blobPath(stored.digest), "utf8")).toBe(canonicalManifest(stored.manifest));
    expect(await store.manifest(stored.digest)).toEqual(stored.manifest);
    expect(await tmpFiles(storeDir)).toEqual([]);
  });

  it("gives the same tree the same digest, and a one-file change exactly one new file blob", async () => {
    const tree = path.join(root, "tree");
    await sampleTree(tree);
    const first = await store.fromDirectory(tree);
    const again = await store.fromDirectory(tree);
    expect(again.digest).toBe(first.digest);
    const before = await blobFiles(storeDir);

    await writeFile(path.join(tree, "lib/b/two.js"), "changed\n");
    const changed = await store.fromDirectory(tree);
    expect(changed.digest).not.toBe(first.digest);
    const added = (await blobFiles(storeDir)).filter((name) => !before.includes(name));
    // One content blob and one manifest.
    expect(added.sort()).toEqual([sha("changed\n"), changed.digest].sort());
  });

  it("equal trees in different places get equal digests", async () => {
    await sampleTree(path.join(root, "one"));
    await sampleTree(path.join(root, "two"));
    const one = await store.fromDirectory(path.join(root, "one"));
    const two = await store.fromDirectory(path.join(root, "two"));
    expect(two.digest).toBe(one.digest);
  });

  it("stores a large file (streamed twice: hashed, then copied) intact", async () => {
    const tree = path.join(root, "tree");
    const big = Buffer.alloc(3 * 1024 * 1024 + 17, 7);
    big.write("start", 0);
    await mkdir(tree, { recursive: true });
    await writeFile(path.join(tree, "big.bin"), big);
    const stored = await store.fromDirectory(tree);
    const digest = createHash("sha256").update(big).digest("hex");
    expect(stored.manifest.entries).toEqual([
      { path: "big.bin", type: "file", mode: 0o644, size: big.length, sha256: digest },
    ]);
    expect((await readFile(store.blobPath(digest))).equals(big)).toBe(true);
  });

  it("refuses a symlink leaving the tree, naming it, and stores nothing", async () => {
    const tree = path.join(root, "tree");
    await makeTree(tree, { "ok.txt": "fine\n", "sub/escape": { link: "../../etc" } });
    await expect(store.fromDirectory(tree)).rejects.toMatchObject({
      code: "E_VALIDATION",
      details: { path: "sub/escape" },
    });
    expect(await blobFiles(storeDir)).toEqual([]);
  });

  it("refuses absolute symlinks and links escaping through other links", async () => {
    const absolute = path.join(root, "absolute");
    await makeTree(absolute, { link: { link: "/etc/passwd" } });
    await expect(store.fromDirectory(absolute)).rejects.toMatchObject({
      code: "E_VALIDATION",
      details: { path: "link" },
    });
    const chained = path.join(root, "chained");
    // Each target reads as inside the tree; followed together they leave it.
    await makeTree(chained, { "d/up": { link: ".." }, x: { link: "d/up/.." } });
    await expect(store.fromDirectory(chained)).rejects.toMatchObject({
      code: "E_VALIDATION",
      details: { path: "x" },
    });
  });

  it("refuses special files", async () => {
    const tree = path.join(root, "tree");
    await makeTree(tree, { "a.txt": "a\n" });
    execFileSync("mkfifo", [path.join(tree, "pipe")]);
    await expect(store.fromDirectory(tree)).rejects.toMatchObject({
      code: "E_VALIDATION",
      details: { path: "pipe" },
    });
  });

  it("says clearly when the directory is missing or not a directory", async () => {
    await expect(store.fromDirectory(path.join(root, "nope"))).rejects.toMatchObject({
      code: "E_VALIDATION",
      message: expect.stringContaining("does not exist"),
    });
    await makeTree(root, { "file.txt": "x" });
    await expect(store.fromDirectory(path.join(root, "file.txt"))).rejects.toMatchObject({
      code: "E_VALIDATION",
    });
  });

  it("leaves out what exclude names", async () => {
    const tree = path.join(root, "tree");
    await makeTree(tree, {
      "keep.js": "k\n",
      "debug.log": "x\n",
      "sub/trace.log": "x\n",
      "node_modules/pkg/index.js": "x\n",
      "docs/internal/secret.md": "x\n",
      "docs/public.md": "p\n",
    });
    const stored = await store.fromDirectory(tree, { exclude: ["*.log", "node_modules/", "docs/internal"] });
    expect(stored.manifest.entries.map((e) => e.path)).toEqual(["docs", "docs/public.md", "keep.js", "sub"]);
  });

  it("keeps a .git directory below the top", async () => {
    const tree = path.join(root, "tree");
    await makeTree(tree, { "vendor/lib/.git/HEAD": "x\n" });
    const stored = await store.fromDirectory(tree);
    expect(stored.manifest.entries.map((e) => e.path)).toContain("vendor/lib/.git/HEAD");
  });

  it("manifest() is E_NOT_FOUND for an unknown digest and for a blob that is not a manifest", async () => {
    const tree = path.join(root, "tree");
    await makeTree(tree, { "a.txt": "a\n" });
    await store.fromDirectory(tree);
    await expect(store.manifest("0".repeat(64))).rejects.toMatchObject({ code: "E_NOT_FOUND" });
    await expect(store.manifest(sha("a\n"))).rejects.toMatchObject({ code: "E_NOT_FOUND" });
    await expect(store.manifest("../../etc/passwd")).rejects.toMatchObject({ code: "E_NOT_FOUND" });
    await expect(store.openBlob("0".repeat(64))).rejects.toMatchObject({ code: "E_NOT_FOUND" });
    expect(await store.hasBlob(sha("a\n"))).toBe(true);
    expect(await store.hasBlob("../x")).toBe(false);
  });
});
