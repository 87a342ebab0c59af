import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { executeCall, type StageManifests } from "../../src/agent/agent-calls.js";
import { KeptManifests } from "../../src/agent/kept-manifests.js";
import { type ArtifactEntry, type ArtifactManifest, manifestDigest } from "../../src/domain/artifact.js";
import { diffManifests } from "../../src/domain/manifest-diff.js";
import type { HostOps, StageSpec } from "../../src/providers/fleet/host-ops.js";

/**
 * How the agent comes by the manifest of a stage call (protocol 2): whole,
 * rebuilt from a kept base and a difference (only if it hashes to the
 * artifact's digest), or read from the server when the base is missing or
 * the result does not add up. A HostOps that records what it was asked to
 * stage stands in for the host layout (tested on its own).
 */
const sha = (n: number) => n.toString(16).padStart(64, "0");
const file = (p: string, n: number): ArtifactEntry => ({
  path: p,
  type: "file",
  mode: 0o644,
  size: n,
  sha256: sha(n),
});
const v1: ArtifactManifest = { version: 1, entries: [file("a", 1), file("b", 2), file("c", 3)] };
const v2: ArtifactManifest = { version: 1, entries: [file("a", 1), file("b", 22), file("c", 3)] };
const other: ArtifactManifest = { version: 1, entries: [file("a", 1), file("b", 2), file("d", 4)] };

describe("the manifest of a stage call", () => {
  let dir: string;
  let staged: StageSpec[];
  let fetched: string[];
  let manifests: StageManifests;
  const ops = {
    name: "h",
    stage: async (spec: StageSpec) => {
      staged.push(spec);
      return { staged: true, blobsFetched: 0, bytesFetched: 0 };
    },
  } as unknown as HostOps;

  beforeEach(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "turnout-stage-manifest-"));
    staged = [];
    fetched = [];
    manifests = {
      kept: new KeptManifests(dir),
      fetch: async (digest) => {
        fetched.push(digest);
        if (digest !== manifestDigest(v2)) throw new Error("no such artifact");
        return v2;
      },
    };
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const stage = (spec: Record<string, unknown>) =>
    executeCall(
      ops,
      () => ({ open: () => Promise.reject(new Error("unused")) }),
      "stage",
      {
        spec: {
          app: "shop",
          releaseId: manifestDigest(v2).slice(0, 16),
          artifact: manifestDigest(v2),
          shared: [],
          env: {},
          timeoutMs: 1000,
          ...spec,
        },
      },
      () => undefined,
      new AbortController().signal,
      manifests,
    );

  it("rebuilds the manifest from a kept base, stages it, and keeps the new one", async () => {
    manifests.kept.keep(manifestDigest(v1), v1);
    const result = await stage({ manifestDiff: diffManifests(manifestDigest(v1), v1, v2) });
    expect(result).toMatchObject({ staged: true, manifest: "diff" });
    expect(staged[0]!.manifest).toEqual(v2);
    expect(fetched).toEqual([]);
    expect(manifests.kept.list()).toContain(manifestDigest(v2));
  });

  it("reads the whole manifest when the base is not kept here", async () => {
    const result = await stage({ manifestDiff: diffManifests(manifestDigest(v1), v1, v2) });
    expect(result).toMatchObject({ manifest: "fetched" });
    expect(fetched).toEqual([manifestDigest(v2)]);
    expect(staged[0]!.manifest).toEqual(v2);
  });

  it("never stages a rebuilt manifest that does not hash to the artifact (a wrong base)", async () => {
    // The host keeps `other`, and the difference claims to be from it but was made from v1.
    manifests.kept.keep(manifestDigest(other), other);
    const result = await stage({
      manifestDiff: { ...diffManifests(manifestDigest(v1), v1, v2), base: manifestDigest(other) },
    });
    expect(result).toMatchObject({ manifest: "fetched" });
    expect(staged[0]!.manifest).toEqual(v2);
  });

  it("takes a whole manifest as before, and refuses both or neither", async () => {
    expect(await stage({ manifest: v2 })).toMatchObject({ manifest: "full" });
    expect(staged[0]!.manifest).toEqual(v2);
    expect(manifests.kept.list()).toEqual([manifestDigest(v2)]);
    await expect(stage({})).rejects.toMatchObject({ code: "E_VALIDATION" });
    await expect(
      stage({ manifest: v2, manifestDiff: diffManifests(manifestDigest(v1), v1, v2) }),
    ).rejects.toMatchObject({ code: "E_VALIDATION" });
    await expect(
      stage({ manifestDiff: { base: manifestDigest(v1), entries: [null], removed: [] } }),
    ).resolves.toMatchObject({ manifest: "fetched" });
    expect(staged).toHaveLength(2);
  });
});
