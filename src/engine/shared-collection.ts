import type { SharedCache } from "../artifacts/shared-cache.js";
import { emptyAmount, type GcAmount } from "../domain/retention.js";
import type { Store } from "../store/store.js";

export interface SharedCollectionInput {
  store: Store;
  cache: SharedCache;
  /** Digests and hosts' release ids the database refers to (GarbageCollector.references). */
  references: () => Promise<[Set<string>, Set<string>]>;
  /** Blobs touched at or after this (ISO) stay, whatever the references say. */
  untouchedSince: string;
  /** Artifact records younger than this are references already; older ones go with their manifest. */
  youngSince: string;
  dryRun: boolean;
}

export interface SharedCollectionResult {
  /** Another server was collecting the shared store: this one left it alone. */
  skipped: boolean;
  blobs: GcAmount;
  artifacts: GcAmount;
  /** The artifact records removed (or, in a dry run, that would be). */
  records: string[];
  /** Referenced artifacts the shared store does not hold. */
  missing: string[];
  keptBytes: number;
}

/**
 * Retention of the shared artifact store (several servers on PostgreSQL),
 * run by one server at a time (an advisory lock; the others skip it and
 * collect only their own cache). What the references name stays, with every
 * blob its manifest names; so does every blob touched within the blob
 * grace. Whatever starts relying on a stored artifact, on any server,
 * touches it and all its blobs before it records the reference
 * (SharedCache.publish / holdsWhole), and the removal re-checks the touch
 * on each row it locks, so a blob another server is writing or has just
 * chosen is never removed; one removed first is reported missing to that
 * server, which writes it again or treats the artifact as gone.
 */
export async function collectShared(input: SharedCollectionInput): Promise<SharedCollectionResult> {
  const { store, cache } = input;
  const shared = cache.shared;
  const result = await shared.exclusively(async (): Promise<SharedCollectionResult> => {
    const stored = await shared.list();
    const byDigest = new Map(stored.map((b) => [b.digest, b]));
    const [digests, hostReleases] = await input.references();
    const roots = new Set(digests);
    if (hostReleases.size > 0)
      for (const blob of stored) if (hostReleases.has(blob.digest.slice(0, 16))) roots.add(blob.digest);
    const live = new Set<string>();
    const missing: string[] = [];
    for (const root of roots) {
      if (live.has(root)) continue;
      if (!byDigest.has(root)) {
        if (digests.has(root)) missing.push(root);
        continue;
      }
      live.add(root);
      for (const sha256 of (await manifestBlobs(cache, root)) ?? []) live.add(sha256);
    }
    const doomed = stored.filter((b) => !live.has(b.digest) && b.touchedAt < input.untouchedSince);
    const keptBytes = stored.reduce((sum, b) => sum + b.size, 0) - doomed.reduce((sum, b) => sum + b.size, 0);
    const removed = input.dryRun
      ? doomed.map((b) => ({ digest: b.digest, size: b.size }))
      : await shared.remove(
          doomed.map((b) => b.digest),
          input.untouchedSince,
        );
    // Bytes a put left without a row (its transaction never committed): only a bucket can hold them.
    const strays =
      !input.dryRun && shared.removeStrays ? await shared.removeStrays(input.untouchedSince) : [];
    // Records whose manifest went, once it went: a record never outlives its files for long,
    // and one found meanwhile names an artifact every server treats as removed.
    const gone = new Set(removed.map((b) => b.digest));
    const records = (await store.retention.artifactsRecordedBefore(input.youngSince)).filter((d) =>
      gone.has(d),
    );
    if (!input.dryRun) await store.retention.deleteArtifacts(records);
    const blobs = emptyAmount();
    for (const b of [...removed, ...strays]) {
      blobs.count++;
      blobs.bytes += b.size;
    }
    const artifacts = emptyAmount();
    for (const digest of records) {
      artifacts.count++;
      artifacts.bytes += byDigest.get(digest)?.size ?? 0;
    }
    return { skipped: false, blobs, artifacts, records, missing, keptBytes };
  });
  return (
    result ?? {
      skipped: true,
      blobs: emptyAmount(),
      artifacts: emptyAmount(),
      records: [],
      missing: [],
      keptBytes: 0,
    }
  );
}

/** The file blobs a stored manifest names (undefined when the blob is not a manifest). */
async function manifestBlobs(cache: SharedCache, digest: string): Promise<string[] | undefined> {
  try {
    await cache.ensure([digest]);
  } catch {
    return undefined;
  }
  return cache.blobsOfManifest(digest);
}
