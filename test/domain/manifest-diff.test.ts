import { describe, expect, it } from "vitest";
import {
  type ArtifactEntry,
  type ArtifactManifest,
  assertManifest,
  manifestDigest,
} from "../../src/domain/artifact.js";
import { applyManifestDiff, diffManifests } from "../../src/domain/manifest-diff.js";

const sha = (n: number) => n.toString(16).padStart(64, "0");
const file = (path: string, n: number, mode = 0o644): ArtifactEntry => ({
  path,
  type: "file",
  mode,
  size: n,
  sha256: sha(n),
});
const manifest = (entries: ArtifactEntry[]): ArtifactManifest => ({ version: 1, entries });

describe("manifest differences", () => {
  const base = manifest([
    { path: "a", type: "dir", mode: 0o755 },
    file("a/one", 1),
    file("a/two", 2),
    { path: "link", type: "symlink", target: "a/one" },
    file("z", 3),
  ]);

  it("carries only what changed, and rebuilds the new manifest exactly (same digest)", () => {
    const next = manifest([
      { path: "a", type: "dir", mode: 0o755 },
      file("a/one", 1),
      file("a/three", 9),
      file("a/two", 2, 0o755),
      { path: "link", type: "symlink", target: "a/two" },
      file("m", 4),
    ]);
    const diff = diffManifests(sha(77), base, next);
    expect(diff.base).toBe(sha(77));
    expect(diff.entries.map((e) => e.path)).toEqual(["a/three", "a/two", "link", "m"]);
    expect(diff.removed).toEqual(["z"]);
    const rebuilt = applyManifestDiff(base, diff);
    expect(rebuilt).toEqual(next);
    expect(manifestDigest(rebuilt)).toBe(manifestDigest(next));
    expect(() => assertManifest(rebuilt)).not.toThrow();
  });

  it("is empty between a manifest and itself, and a one-file change is one entry", () => {
    expect(diffManifests(sha(1), base, base)).toEqual({ base: sha(1), entries: [], removed: [] });
    const one = manifest(base.entries.map((e) => (e.path === "a/two" ? file("a/two", 22) : e)));
    const diff = diffManifests(sha(1), base, one);
    expect(diff.entries).toEqual([file("a/two", 22)]);
    expect(diff.removed).toEqual([]);
    expect(manifestDigest(applyManifestDiff(base, diff))).toBe(manifestDigest(one));
  });

  it("applied to another base gives another digest (which the host refuses to stage)", () => {
    const next = manifest([...base.entries.slice(0, 4), file("z", 5)]);
    const diff = diffManifests(sha(1), base, next);
    const otherBase = manifest([...base.entries, file("zz", 6)]);
    expect(manifestDigest(applyManifestDiff(otherBase, diff))).not.toBe(manifestDigest(next));
  });
});
