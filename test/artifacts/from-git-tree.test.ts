import { appendFile, chmod, mkdir, readdir, readFile, rm, symlink, writeFile } from "node:fs/promises";
import path from "node:path";
import type { Readable } from "node:stream";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ArtifactStore } from "../../src/artifacts/artifact-store.js";
import { SecretMasker } from "../../src/domain/secrets.js";
import { type GitTreeReader, gitTreeReader } from "../../src/git/tree-reader.js";
import { fixtureGitEnv, git, makeRepo, type TestRepo } from "../helpers/git-fixtures.js";
import { blobFiles, looseFiles, tempDir, tmpFiles } from "./helpers.js";

let scratch: { dir: string; cleanup(): Promise<void> };
let repo: TestRepo;
let store: ArtifactStore;
let storeDir: string;

/** A reader over the repository's own .git, counting the blobs it is asked to read and the listings. */
function reader(sha: string, asked: string[][] = [], listed: string[] = []): GitTreeReader {
  const inner = gitTreeReader({
    gitDir: path.join(repo.path, ".git"),
    sha,
    env: fixtureGitEnv(),
    masker: new SecretMasker([]),
    timeoutMs: 30_000,
  });
  return {
    repository: inner.repository,
    commit: inner.commit,
    diff: (from, subdir) => inner.diff(from, subdir),
    list: (subdir) => {
      listed.push(subdir ?? ".");
      return inner.list(subdir);
    },
    readBlobs: (ids, sink) => {
      asked.push([...ids]);
      return inner.readBlobs(ids, sink);
    },
  };
}

/** The artifact a store that never saw the repository makes of `sha`: the reference. */
async function fresh(sha: string, subdir: string | null = null) {
  const other = new ArtifactStore({
    dir: path.join(scratch.dir, `fresh-${sha.slice(0, 8)}-${Math.random()}`),
  });
  return (await other.fromGitTree(reader(sha), subdir))!;
}

/** The same commit checked out, for fromDirectory to compare with. */
async function checkout(sha: string): Promise<string> {
  const dir = path.join(scratch.dir, `checkout-${sha.slice(0, 8)}`);
  await git(repo.path, "worktree", "add", "--detach", "--quiet", dir, sha);
  return dir;
}

beforeEach(async () => {
  scratch = await tempDir("git-tree");
  repo = await makeRepo(path.join(scratch.dir, "repo"));
  storeDir = path.join(scratch.dir, "artifacts");
  store = new ArtifactStore({ dir: storeDir });
  const big = Buffer.alloc(3 * 1024 * 1024 + 5, 7);
  await mkdir(path.join(repo.path, "bin"), { recursive: true });
  await writeFile(path.join(repo.path, "bin", "run"), "#!/bin/sh\necho run\n");
  await chmod(path.join(repo.path, "bin", "run"), 0o755);
  await writeFile(path.join(repo.path, "big.bin"), big);
  await symlink("bin/run", path.join(repo.path, "start"));
  await repo.commit({
    "README.md": "hello\n",
    "src/app/main.js": "console.log(1)\n",
    "src/app/empty.txt": "",
    "src/a file with spaces ü.txt": "spaces\n",
    "src/copy.txt": "hello\n",
  });
});

afterEach(async () => {
  await scratch.cleanup();
});

describe("ArtifactStore.fromGitTree", () => {
  it("gives the manifest a checkout would: modes, symlinks, empty files, odd names, large blobs", async () => {
    const fromGit = await store.fromGitTree(reader(repo.head), null);
    const fromDir = await new ArtifactStore({ dir: path.join(scratch.dir, "other") }).fromDirectory(
      await checkout(repo.head),
      { exclude: [".git"] },
    );
    expect(fromGit).not.toBeNull();
    expect(fromGit!.manifest).toEqual(fromDir.manifest);
    expect(fromGit!.digest).toBe(fromDir.digest);
    expect(fromGit!.manifest.entries).toContainEqual({ path: "start", type: "symlink", target: "bin/run" });
    expect(fromGit!.manifest.entries.find((e) => e.path === "bin/run")).toMatchObject({ mode: 0o755 });
    // The new blobs are stored once each (README and copy share one), in one pack; the manifest alone is loose.
    expect(await looseFiles(storeDir)).toEqual([fromGit!.digest]);
    expect((await readdir(path.join(storeDir, "packs"))).map((n) => path.extname(n)).sort()).toEqual([
      ".idx",
      ".pack",
    ]);
    expect(await tmpFiles(storeDir)).toEqual([]);
    // Served from the pack, alone or back to back, byte for byte.
    const files = fromGit!.manifest.entries.filter((e) => e.type === "file");
    for (const file of files) {
      const source = path.join(repo.path, file.path);
      expect((await readAll(await store.openBlob(file.sha256))).equals(await readFile(source))).toBe(true);
    }
    const all = store.concatenated(files.map((f) => f.sha256));
    const expected = Buffer.concat(
      await Promise.all(files.map((f) => readFile(path.join(repo.path, f.path)))),
    );
    expect(all.size).toBe(expected.length);
    const received: Buffer[] = [];
    // The sink copies: the store reuses a buffer once its write called back.
    await all.writeTo({
      write: (chunk, done) => {
        received.push(Buffer.from(chunk));
        setImmediate(done);
      },
    });
    expect(Buffer.concat(received).equals(expected)).toBe(true);
  });

  it("reads only the blobs it has not seen: a one-file change reads one file", async () => {
    const asked: string[][] = [];
    await store.fromGitTree(reader(repo.head, asked), null);
    expect(asked.flat().length).toBe(7); // 6 distinct file blobs + the symlink's
    await repo.commit({ "src/app/main.js": "console.log(2)\n" });
    const second: string[][] = [];
    const next = await store.fromGitTree(reader(repo.head, second), null);
    expect(second.flat().length).toBe(1); // a diff from the last tree: not even the symlink is read again
    const main = next!.manifest.entries.find((e) => e.path === "src/app/main.js");
    expect(main?.type === "file" && (await readAll(await store.openBlob(main.sha256))).toString()).toBe(
      "console.log(2)\n",
    );

    // A new store object over the same directory remembers (the memo is on disk) and ignores a torn last line.
    await appendFile(path.join(storeDir, "git-blob-digests"), "0123abc");
    const third: string[][] = [];
    const again = await new ArtifactStore({ dir: storeDir }).fromGitTree(reader(repo.head, third), null);
    expect(third.flat().length).toBe(1);
    expect(again!.digest).toBe(next!.digest);
  });

  it("after the first tree, a content-only change is a diff: no listing, one blob read, the same digest", async () => {
    await store.fromGitTree(reader(repo.head), null);
    await repo.commit({ "src/app/main.js": "console.log(3)\n", "README.md": "changed\n" });
    await chmod(path.join(repo.path, "bin", "run"), 0o644);
    await repo.commit({});
    const asked: string[][] = [];
    const listed: string[] = [];
    const next = await store.fromGitTree(reader(repo.head, asked, listed), null);
    expect(listed).toEqual([]);
    expect(asked.flat().length).toBe(2);
    const reference = await fresh(repo.head);
    expect(next!.digest).toBe(reference.digest);
    expect(next!.manifest.entries.find((e) => e.path === "bin/run")).toMatchObject({ mode: 0o644 });

    // Anything else (a file added, one removed, a link changed) lists the whole tree again.
    const structural: Record<string, string | null>[] = [{ "new.txt": "new\n" }, { "src/copy.txt": null }];
    for (const change of structural) {
      await repo.commit(change);
      const relisted: string[] = [];
      const built = await store.fromGitTree(reader(repo.head, [], relisted), null);
      expect(relisted).toEqual(["."]);
      expect(built!.digest).toBe((await fresh(repo.head)).digest);
    }
    await rm(path.join(repo.path, "start"));
    await symlink("README.md", path.join(repo.path, "start"));
    await repo.commit({});
    const relisted: string[] = [];
    const built = await store.fromGitTree(reader(repo.head, [], relisted), null);
    expect(relisted).toEqual(["."]);
    expect(built!.manifest.entries).toContainEqual({ path: "start", type: "symlink", target: "README.md" });
  });

  it("reads again what the memo knows but the store lost (packs removed by hand)", async () => {
    const first = await store.fromGitTree(reader(repo.head), null);
    await rm(path.join(storeDir, "packs"), { recursive: true, force: true });
    const asked: string[][] = [];
    const reopened = new ArtifactStore({ dir: storeDir });
    const again = await reopened.fromGitTree(reader(repo.head, asked), null);
    expect(asked.flat().length).toBe(7);
    expect(again!.digest).toBe(first!.digest);
    const main = again!.manifest.entries.find((e) => e.path === "src/app/main.js");
    expect(main?.type === "file" && (await readAll(await reopened.openBlob(main.sha256))).toString()).toBe(
      "console.log(1)\n",
    );
  });

  it("reads a subdirectory as the artifact root, as fromDirectory of that directory would", async () => {
    const fromGit = await store.fromGitTree(reader(repo.head), "src/app");
    const fromDir = await store.fromDirectory(path.join(await checkout(repo.head), "src", "app"));
    expect(fromGit!.digest).toBe(fromDir.digest);
    expect(fromGit!.manifest.entries.map((e) => e.path)).toEqual(["empty.txt", "main.js"]);
  });

  it("declines trees a checkout would not reproduce from their blobs, storing nothing", async () => {
    await repo.commit({ "docs/.gitattributes": "*.txt eol=crlf\n" });
    expect(await store.fromGitTree(reader(repo.head), null)).toBeNull();
    const sub = await makeRepo(path.join(scratch.dir, "sub"));
    await sub.commit({ "lib.txt": "lib\n" });
    await repo.commit({ "docs/.gitattributes": null });
    await repo.addSubmodule(sub.path, "vendor/lib");
    expect(await store.fromGitTree(reader(repo.head), null)).toBeNull();
    expect(await blobFiles(storeDir)).toEqual([]);
    expect(await readdir(path.join(storeDir, "packs")).catch(() => [])).toEqual([]);
  });

  it("fails with E_GIT, storing nothing, when the commit or the subdirectory is not there", async () => {
    await expect(store.fromGitTree(reader("0".repeat(40)), null)).rejects.toMatchObject({ code: "E_GIT" });
    await expect(store.fromGitTree(reader(repo.head), "no/such/dir")).rejects.toMatchObject({
      code: "E_GIT",
    });
    expect(await blobFiles(storeDir)).toEqual([]);
    expect(await readdir(path.join(storeDir, "packs")).catch(() => [])).toEqual([]);
  });
});

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}
