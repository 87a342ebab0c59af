import type { CallArgs } from "../../agent/protocol.js";
import { type ArtifactManifest, hostReleaseId } from "../../domain/artifact.js";
import { diffManifests } from "../../domain/manifest-diff.js";
import type { StageSpec } from "./host-ops.js";

/** An artifact's app and manifest; undefined when it is not stored. */
export type BaseManifestSource = (
  digest: string,
) => Promise<{ app: string; manifest: ArtifactManifest } | undefined>;

/** Bases tried per host before it gets the whole manifest (each is one artifact read, cached per deploy). */
const MAX_BASES_TRIED = 3;

/**
 * Stage arguments that carry the difference between the release being
 * staged and a manifest the agent keeps (agent protocol 2), instead of the
 * whole manifest: for a one-file change, a few hundred bytes instead of
 * hundreds of kilobytes per host.
 *
 * The base is one the agent named (it keeps the manifests of its last
 * releases), preferring the release its `current` points at, and must be
 * an artifact of the same app: a host is never sent paths of another app's
 * tree. Hosts of a fleet mostly hold the same base, so each difference is
 * computed (and serialised, see AgentConnection) once per deploy and base:
 * the cache hangs off the stage spec, which lives as long as the deploy.
 */
export class ManifestDiffs {
  private readonly cache = new WeakMap<StageSpec, Map<string, Promise<CallArgs<"stage"> | undefined>>>();

  constructor(private readonly source: BaseManifestSource) {}

  /** Arguments with a difference, or undefined: send the whole manifest. */
  async argsFor(
    spec: StageSpec,
    kept: readonly string[],
    current: string | null,
  ): Promise<CallArgs<"stage"> | undefined> {
    if (!spec.artifact || kept.length === 0) return undefined;
    // The base the host runs first: the release it most likely shares the most with.
    const ordered = [...kept].sort(
      (a, b) => Number(hostReleaseId(b) === current) - Number(hostReleaseId(a) === current),
    );
    for (const base of ordered.slice(0, MAX_BASES_TRIED)) {
      if (base === spec.artifact) continue;
      const args = await this.forBase(spec, base);
      if (args) return args;
    }
    return undefined;
  }

  private forBase(spec: StageSpec, base: string): Promise<CallArgs<"stage"> | undefined> {
    let bases = this.cache.get(spec);
    if (!bases) {
      bases = new Map();
      this.cache.set(spec, bases);
    }
    let args = bases.get(base);
    if (!args) {
      args = this.build(spec, base);
      bases.set(base, args);
    }
    return args;
  }

  private async build(spec: StageSpec, base: string): Promise<CallArgs<"stage"> | undefined> {
    let found: Awaited<ReturnType<BaseManifestSource>>;
    try {
      found = await this.source(base);
    } catch {
      return undefined;
    }
    if (!found || found.app !== spec.app) return undefined;
    const diff = diffManifests(base, found.manifest, spec.manifest);
    // A difference as large as the tree saves nothing: the whole manifest it is.
    if (diff.entries.length + diff.removed.length >= spec.manifest.entries.length) return undefined;
    const { manifest: _whole, ...rest } = spec;
    return { spec: { ...rest, manifestDiff: diff } };
  }
}
