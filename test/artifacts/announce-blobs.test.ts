import { randomBytes } from "node:crypto";
import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ArtifactStore } from "../../src/artifacts/artifact-store.js";
import { PREFETCH_PACK_BYTES } from "../../src/artifacts/git-tree-source.js";
import type { ArtifactManifest } from "../../src/domain/artifact.js";
import { SecretMasker } from "../../src/domain/secrets.js";
import { gitTreeReader } from "../../src/git/tree-reader.js";
import { fixtureGitEnv, makeRepo, type TestRepo } from "../helpers/git-fixtures.js";
import { tempDir } from "./helpers.js";

/**
 * Blobs announced while a tree is stored (fleet prefetch): every announced
 * blob is readable from the store at the moment it is announced, the new
 * ones come in several rounds (one pack each) before the tree is done, every
 * file of the manifest is announced, and the artifact is the one a store
 * without announcements makes.
 */
let scratch: { dir: string; cleanup(): Promise<void> };
let repo: TestRepo;

beforeEach(async () => {
  scratch = await tempDir("announce");
  repo = await makeRepo(path.join(scratch.dir, "repo"));
});
afterEach(async () => {
  await scratch.cleanup();
});

/** 24 MiB of hex text in 48 files: three rounds or more. */
function bigTree(): Record<string, string> {
  const files: Record<string, string> = {};
  for (let i = 0; i < 48; i++) files[`d${i % 4}/f${i}.txt`] = randomBytes(256 * 1024).toString("hex");
  return files;
}

function recorder(store: ArtifactStore) {
  const rounds: { sha256: string; size: number }[][] = [];
  const readable: Promise<boolean>[] = [];
  return {
    rounds,
    readable,
    onBlobs: (blobs: { sha256: string; size: number }[]) => {
      rounds.push(blobs.map((b) => ({ sha256: b.sha256, size: b.size })));
      // Asked at once, inside the callback: readable now, not only once the tree is done.
      for (const b of blobs) readable.push(store.hasBlob(b.sha256));
    },
  };
}

const fileDigests = (manifest: ArtifactManifest) =>
  new Set(manifest.entries.flatMap((e) => (e.type === "file" ? [e.sha256] : [])));

describe("announcing blobs as they are stored", () => {
  it("a git tree: new blobs in rounds of packs, each readable when announced, all of them by the end", async () => {
    const sha = await repo.commit(bigTree(), "big");
    const reader = () =>
      gitTreeReader({
        gitDir: path.join(repo.path, ".git"),
        sha,
        env: fixtureGitEnv(),
        masker: new SecretMasker([]),
        timeoutMs: 30_000,
      });
    const store = new ArtifactStore({ dir: path.join(scratch.dir, "a") });
    const seen = recorder(store);
    const stored = (await store.fromGitTree(reader(), null, { onBlobs: seen.onBlobs }))!;
    expect(seen.rounds.length).toBeGreaterThanOrEqual(3);
    for (const round of seen.rounds) {
      const bytes = round.reduce((s, b) => s + b.size, 0);
      // A round closes once it would pass the limit: at most one blob over it.
      expect(bytes).toBeLessThanOrEqual(PREFETCH_PACK_BYTES + 512 * 1024);
    }
    expect(await Promise.all(seen.readable)).not.toContain(false);
    const announced = new Set(seen.rounds.flat().map((b) => b.sha256));
    expect(announced).toEqual(fileDigests(stored.manifest));

    const plain = (await new ArtifactStore({ dir: path.join(scratch.dir, "b") }).fromGitTree(
      reader(),
      null,
    ))!;
    expect(stored.digest).toBe(plain.digest);

    // The next release of the same tree (a diff from the last): only the one new blob, not the files that stay.
    const next = await repo.commit({ "d0/f0.txt": "changed" }, "one file");
    const again = recorder(store);
    const second = (await store.fromGitTree(
      gitTreeReader({
        gitDir: path.join(repo.path, ".git"),
        sha: next,
        env: fixtureGitEnv(),
        masker: new SecretMasker([]),
        timeoutMs: 30_000,
      }),
      null,
      { onBlobs: again.onBlobs },
    ))!;
    expect(await Promise.all(again.readable)).not.toContain(false);
    const changed = second.manifest.entries.find((e) => e.path === "d0/f0.txt") as { sha256: string };
    expect(again.rounds.flat().map((b) => b.sha256)).toEqual([changed.sha256]);
    // Built again from scratch in the same store: everything is stored already, nothing is announced.
    const third = recorder(store);
    await store.fromGitTree(reader(), null, { onBlobs: third.onBlobs });
    expect(third.rounds.flat()).toEqual([]);
  }, 60_000);

  it("a directory: new small files in rounds, readable when announced; stored ones not named", async () => {
    const dir = path.join(scratch.dir, "built");
    // 25 MiB of 40 KiB files: rounds are closed every 256 files (a turn of the event loop) past 8 MiB.
    for (let i = 0; i < 640; i++) {
      await mkdir(path.join(dir, `d${i % 8}`), { recursive: true });
      await writeFile(path.join(dir, `d${i % 8}`, `f${i}`), randomBytes(40 * 1024));
    }
    const store = new ArtifactStore({ dir: path.join(scratch.dir, "c") });
    const seen = recorder(store);
    const stored = await store.fromDirectory(dir, { onBlobs: seen.onBlobs });
    expect(seen.rounds.length).toBeGreaterThanOrEqual(1);
    expect(await Promise.all(seen.readable)).not.toContain(false);
    const announced = new Set(seen.rounds.flat().map((b) => b.sha256));
    // The last round is committed with the manifest: announced are the earlier rounds only.
    expect(announced.size).toBeGreaterThan(0);
    for (const digest of announced) expect(fileDigests(stored.manifest).has(digest)).toBe(true);

    // Built again unchanged: every blob is stored already (hosts that deployed it hold them): none is named.
    const again = recorder(store);
    const second = await store.fromDirectory(dir, { onBlobs: again.onBlobs });
    expect(second.digest).toBe(stored.digest);
    expect(again.rounds.flat()).toEqual([]);
  }, 60_000);
});
