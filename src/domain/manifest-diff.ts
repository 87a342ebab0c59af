import type { ArtifactEntry, ArtifactManifest } from "./artifact.js";

/**
 * The difference between two artifact manifests, so a host that already
 * holds one release is sent only what changed for the next (agent protocol
 * 2): a one-file change is one entry instead of every entry of the tree.
 *
 * `entries`: every entry of the new manifest that the base lacks or has
 * otherwise (sorted like a manifest); `removed`: paths of the base that the
 * new manifest does not have. Applying it to anything but its base gives a
 * manifest with another digest, which the host checks before it stages.
 */
export interface ManifestDiff {
  /** The base manifest's artifact digest. */
  base: string;
  entries: ArtifactEntry[];
  removed: string[];
}

export function diffManifests(
  baseDigest: string,
  base: ArtifactManifest,
  next: ArtifactManifest,
): ManifestDiff {
  const old = new Map<string, ArtifactEntry>();
  for (const entry of base.entries) old.set(entry.path, entry);
  const entries: ArtifactEntry[] = [];
  for (const entry of next.entries) {
    const before = old.get(entry.path);
    if (!before || !sameEntry(before, entry)) entries.push(entry);
    old.delete(entry.path);
  }
  return { base: baseDigest, entries, removed: [...old.keys()] };
}

/**
 * The base with the difference applied: entries in manifest order (the
 * merge of two sorted lists, by the same comparison assertManifest checks).
 * Nothing here is trusted: the caller validates and hashes the result.
 */
export function applyManifestDiff(
  base: ArtifactManifest,
  diff: Pick<ManifestDiff, "entries" | "removed">,
): ArtifactManifest {
  const gone = new Set(diff.removed);
  for (const entry of diff.entries) gone.add(entry.path);
  const kept = base.entries.filter((entry) => !gone.has(entry.path));
  const added = diff.entries;
  const entries: ArtifactEntry[] = [];
  let i = 0;
  let j = 0;
  while (i < kept.length || j < added.length) {
    if (j >= added.length || (i < kept.length && kept[i]!.path < added[j]!.path)) entries.push(kept[i++]!);
    else entries.push(added[j++]!);
  }
  return { version: 1, entries };
}

function sameEntry(a: ArtifactEntry, b: ArtifactEntry): boolean {
  if (a.type !== b.type) return false;
  switch (a.type) {
    case "dir":
      return a.mode === (b as typeof a).mode;
    case "file": {
      const other = b as typeof a;
      return a.mode === other.mode && a.size === other.size && a.sha256 === other.sha256;
    }
    case "symlink":
      return a.target === (b as typeof a).target;
  }
}
