import { mkdir, utimes, writeFile } from "node:fs/promises";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { ArtifactStore } from "../../src/artifacts/artifact-store.js";
import { compileExcludes } from "../../src/artifacts/exclude.js";
import { makeTree, tempDir, tmpFiles } from "./helpers.js";

describe("exclude patterns", () => {
  it("match names at any depth, anchored paths from the top, ** across directories", () => {
    const excluded = compileExcludes(["*.log", "/build/tmp", "cache/", "docs/**/draft-*.md"]);
    expect(excluded("a.log", false)).toBe(true);
    expect(excluded("deep/er/b.log", false)).toBe(true);
    expect(excluded("a.log.txt", false)).toBe(false);
    expect(excluded("build/tmp", true)).toBe(true);
    expect(excluded("src/build/tmp", true)).toBe(false);
    expect(excluded("x/cache", true)).toBe(true);
    expect(excluded("x/cache", false)).toBe(false);
    expect(excluded("docs/draft-1.md", false)).toBe(true);
    expect(excluded("docs/a/b/draft-2.md", false)).toBe(true);
    expect(excluded("docs/a/final.md", false)).toBe(false);
    expect(compileExcludes(undefined)("anything", false)).toBe(false);
    // Regex characters in patterns are literal.
    expect(compileExcludes(["a+b.(c)"])("a+b.(c)", false)).toBe(true);
    expect(compileExcludes(["a+b.(c)"])("aab.(c)", false)).toBe(false);
  });
});

describe("crash leftovers", () => {
  it("removes stale temp files of a dead writer, and leaves fresh ones alone", async () => {
    const { dir, cleanup } = await tempDir("stale");
    try {
      const storeDir = path.join(dir, "store");
      await mkdir(path.join(storeDir, "tmp"), { recursive: true });
      const stale = path.join(storeDir, "tmp", "1234-deadbeef");
      const fresh = path.join(storeDir, "tmp", "1234-cafecafe");
      await writeFile(stale, "half a blob");
      await writeFile(fresh, "being written");
      const old = new Date(Date.now() - 2 * 60 * 60 * 1000);
      await utimes(stale, old, old);
      await makeTree(path.join(dir, "tree"), { "a.txt": "a" });
      await new ArtifactStore({ dir: storeDir }).fromDirectory(path.join(dir, "tree"));
      expect(await tmpFiles(storeDir)).toEqual(["1234-cafecafe"]);
    } finally {
      await cleanup();
    }
  });
});
