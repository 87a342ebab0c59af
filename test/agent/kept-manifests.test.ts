import { readdirSync, utimesSync, writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { KeptManifests } from "../../src/agent/kept-manifests.js";
import { MAX_KEPT_MANIFESTS } from "../../src/agent/protocol.js";
import { type ArtifactManifest, manifestDigest } from "../../src/domain/artifact.js";

const manifestOf = (n: number): ArtifactManifest => ({
  version: 1,
  entries: [{ path: `f${n}`, type: "file", mode: 0o644, size: n, sha256: n.toString(16).padStart(64, "0") }],
});

describe("the agent's kept manifests", () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "turnout-kept-"));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("keeps only manifests that hash to their digest, newest first, at most the limit", () => {
    const kept = new KeptManifests(path.join(dir, "manifests"));
    expect(kept.list()).toEqual([]);
    const one = manifestOf(1);
    const digest = manifestDigest(one);
    expect(kept.keep("f".repeat(64), one)).toBe(false);
    expect(kept.keep(digest, one)).toBe(true);
    expect(kept.read(digest)).toEqual(one);
    expect(kept.list()).toEqual([digest]);
    const long = new Date(Date.now() - 2_000_000_000);
    utimesSync(path.join(dir, "manifests", `${digest}.json`), long, long);

    const digests: string[] = [];
    for (let i = 2; i < MAX_KEPT_MANIFESTS + 4; i++) {
      const m = manifestOf(i);
      const d = manifestDigest(m);
      digests.push(d);
      expect(kept.keep(d, m)).toBe(true);
      // Distinct modification times, oldest first.
      const at = new Date(Date.now() - 1_000_000 + i * 1000);
      utimesSync(path.join(dir, "manifests", `${d}.json`), at, at);
    }
    expect(kept.list()).toEqual(digests.slice(-MAX_KEPT_MANIFESTS).reverse());
    expect(readdirSync(path.join(dir, "manifests")).length).toBeLessThanOrEqual(MAX_KEPT_MANIFESTS + 1);
  });

  it("treats a damaged file as absent (and removes it)", () => {
    const kept = new KeptManifests(dir);
    const m = manifestOf(5);
    const d = manifestDigest(m);
    kept.keep(d, m);
    writeFileSync(path.join(dir, `${d}.json`), '{"version":1,"entries":[]}');
    expect(kept.read(d)).toBeUndefined();
    expect(kept.list()).toEqual([]);
    expect(kept.read("../../etc/passwd")).toBeUndefined();
  });
});
