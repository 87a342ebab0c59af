import type { ArtifactInfo, ArtifactManifest } from "../domain/artifact.js";
import { artifactNotFound } from "../domain/artifact.js";
import { notFound, TurnoutError } from "../domain/errors.js";
import { authorize, can, type Principal } from "../domain/roles.js";

/**
 * Who may download an artifact's manifest and blobs (the agent endpoints).
 * A host reads only what the server sent it: the artifacts recorded for it
 * before a stage call (store.fleet.sendArtifact), and of those only the
 * blobs their manifests list. An enrollment token reads nothing; an admin
 * token reads its apps' artifacts. "Not yours" is answered exactly like
 * "does not exist" (404 E_NOT_FOUND naming the digest asked for), so a host
 * learns nothing of other apps' artifacts by probing.
 *
 * Cost: one indexed look-up per request, whatever the batch size, and none
 * while this server waits for the host to stage that very artifact; the
 * blob sets of recently used manifests are kept in memory (content-addressed,
 * so never stale), so a batch of a thousand blobs is a thousand set look-ups.
 */
export interface ReadAccessDeps {
  /** Whether the server sent this artifact to this host. */
  wasSent(hostId: number, digest: string): Promise<boolean>;
  /**
   * Whether this server is waiting, now, for this host to stage this
   * artifact (a stage call on its connection here): sent for certain, known
   * without a statement (the record is written before the call).
   */
  staging?(host: { id: number; name: string }, digest: string): boolean;
  /** The artifact's record (its app), if any. */
  findArtifact(digest: string): Promise<ArtifactInfo | undefined>;
  manifest(digest: string): Promise<ArtifactManifest>;
  /**
   * Whether a prefetch grant (named where the artifact goes) lets this host
   * read these blobs of a release still being built (prefetch-grants.ts).
   */
  prefetched?(hostId: number, grant: string, digests: readonly string[]): boolean;
}

/** Blob digests kept in memory across cached manifests (about 100 bytes each). */
const MAX_CACHED_BLOBS = 500_000;

export class ArtifactReadAccess {
  private readonly members = new Map<string, Promise<ReadonlySet<string>>>();
  private readonly sizes = new Map<string, number>();
  private cached = 0;

  constructor(private readonly deps: ReadAccessDeps) {}

  /** `GET /artifacts/:digest/manifest`: throws unless `principal` may read that manifest. */
  async assertManifest(principal: Principal, digest: string): Promise<void> {
    authorize(principal, "agent");
    const missing = () => artifactNotFound(digest);
    if (principal.host) {
      if (!(await this.wasSent(principal.host, digest))) throw missing();
      return;
    }
    refuseEnrollmentToken(principal);
    const artifact = await this.deps.findArtifact(digest);
    if (!artifact) throw missing();
    // Another app's artifact is answered exactly like a missing one.
    authorize(principal, "agent", artifact.app, missing);
  }

  /**
   * `GET /blobs/:sha256` and `POST /blobs/batch`: throws unless every blob
   * belongs to `artifact` and `principal` may read that artifact. Only an
   * admin of every app may leave the artifact out.
   */
  async assertBlobs(principal: Principal, artifact: string | undefined, digests: string[]): Promise<void> {
    authorize(principal, "agent");
    refuseEnrollmentToken(principal);
    if (artifact === undefined) {
      if (!principal.host && principal.apps === null) return;
      throw new TurnoutError(
        "E_BAD_REQUEST",
        "name the artifact these blobs belong to (?artifact=DIGEST, or `artifact` in a batch): " +
          "hosts may read only what the server sent them (an agent older than the server does not: upgrade it)",
      );
    }
    const first = digests[0]!;
    const missing = (sha256: string) => notFound(`blob ${sha256}`, { sha256 });
    if (principal.host) {
      // A grant is in memory and names exactly the blobs offered: no manifest to read.
      if (this.deps.prefetched?.(principal.host.id, artifact, digests)) return;
      if (!(await this.wasSent(principal.host, artifact))) throw missing(first);
    } else {
      const info = await this.deps.findArtifact(artifact);
      if (!info || !can(principal, "agent", info.app)) throw missing(first);
    }
    let members: ReadonlySet<string>;
    try {
      members = await this.blobsOf(artifact);
    } catch {
      throw missing(first);
    }
    for (const sha256 of digests) if (!members.has(sha256)) throw missing(sha256);
  }

  private async wasSent(host: { id: number; name: string }, digest: string): Promise<boolean> {
    return this.deps.staging?.(host, digest) === true || (await this.deps.wasSent(host.id, digest));
  }

  /** The blobs an artifact's manifest lists (and the manifest itself). */
  private blobsOf(digest: string): Promise<ReadonlySet<string>> {
    const known = this.members.get(digest);
    if (known) {
      // Most recently used last: the first key is the one to forget.
      this.members.delete(digest);
      this.members.set(digest, known);
      return known;
    }
    const loading = this.deps.manifest(digest).then((manifest) => {
      const set = new Set<string>([digest]);
      for (const entry of manifest.entries) if (entry.type === "file") set.add(entry.sha256);
      this.sizes.set(digest, set.size);
      this.cached += set.size;
      this.evict(digest);
      return set;
    });
    this.members.set(digest, loading);
    loading.catch(() => {
      if (this.members.get(digest) === loading) this.members.delete(digest);
    });
    return loading;
  }

  private evict(keep: string): void {
    for (const digest of this.members.keys()) {
      if (this.cached <= MAX_CACHED_BLOBS) return;
      if (digest === keep) continue;
      const size = this.sizes.get(digest);
      if (size === undefined) continue; // still loading
      this.members.delete(digest);
      this.sizes.delete(digest);
      this.cached -= size;
    }
  }
}

function refuseEnrollmentToken(principal: Principal): void {
  if (principal.role === "agent" && !principal.host) {
    throw new TurnoutError(
      "E_FORBIDDEN",
      `token '${principal.name}' is an enrollment token: it enrolls hosts and reads nothing (hosts download with their own host token)`,
    );
  }
}
