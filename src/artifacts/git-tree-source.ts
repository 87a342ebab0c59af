import type { ArtifactEntry, ArtifactManifest } from "../domain/artifact.js";
import type { GitTreeChange, GitTreeReader } from "../git/tree-reader.js";
import type { BlobDigestMemo, KnownBlob } from "./blob-digest-memo.js";
import type { BlobDir } from "./blob-dir.js";
import { refuse, type TreeBuilder } from "./tree-builder.js";

/**
 * Told of blobs as they become readable from the store while a tree is
 * still being read (fleet prefetch): stored ones at once, new ones each time
 * a pack is committed. Without it, a tree's new blobs go into one pack.
 */
export type BlobAnnounce = (blobs: { sha256: string; size: number }[]) => void;

/**
 * With an announce, new blobs are packed in rounds of about this many bytes
 * (or PREFETCH_PACK_BLOBS blobs), each committed on its own so hosts can start
 * fetching it: a few more flushes and `git cat-file` runs for a large tree.
 */
export const PREFETCH_PACK_BYTES = 8 * 1024 * 1024;
export const PREFETCH_PACK_BLOBS = 2000;

/**
 * A commit's tree → entries and blobs, read from the mirror without a
 * checkout. Only blobs the memo does not know are read (one `git cat-file
 * --batch`), hashed and stored, together in one pack; symlink targets are
 * always read (they are few and their text is the entry).
 *
 * Returns false, having stored nothing, for trees a checkout would not
 * reproduce byte for byte from their blobs: submodules (their content is
 * another repository) and `.gitattributes` anywhere (filters, eol and
 * export rules change what checkout writes). The caller then builds the
 * artifact from a workspace as before.
 */
export async function readGitTree(
  reader: GitTreeReader,
  subdir: string | null,
  builder: TreeBuilder,
  blobs: BlobDir,
  memo: BlobDigestMemo,
  announce?: BlobAnnounce,
): Promise<boolean> {
  const entries = await reader.list(subdir);
  if (entries.some((e) => e.kind === "submodule" || isAttributes(e.path))) return false;

  const unknown = new Set<string>();
  const linkIds = new Set<string>();
  const sizes = new Map<string, number>();
  for (const entry of entries) {
    builder.checkPath(entry.path);
    if (entry.kind === "symlink") linkIds.add(entry.objectId);
    else if (!stored(memo, blobs, entry.objectId)) {
      unknown.add(entry.objectId);
      if (entry.size !== undefined) sizes.set(entry.objectId, entry.size);
    }
  }
  // Only the blobs this build writes are announced: blobs stored before belong to earlier
  // releases, which hosts mostly hold already, and naming 3,000 of them to every host costs a
  // one-file change 240 KB on the wire (what staging does not need, it does not fetch).
  const targets = announce
    ? await storeInRounds(reader, unknown, linkIds, sizes, blobs, memo, announce)
    : await storeBlobs(reader, unknown, linkIds, blobs, memo);

  for (const entry of entries) {
    if (entry.kind === "symlink") {
      builder.add({ path: entry.path, type: "symlink", target: targets.get(entry.objectId)! });
      continue;
    }
    builder.add(fileEntry(entry.path, entry.kind === "executable", entry.size, memo.get(entry.objectId)));
  }
  return true;
}

/**
 * The manifest of `reader`'s commit from the manifest of an earlier commit
 * of the same tree, when all that changed is the content or executable bit
 * of existing files (`git diff-tree`): the common case of a release, and
 * then nothing but the changed files is listed, read or checked, as the
 * tree's shape (paths, links, directories) is the earlier one's, which was
 * checked when it was built. Null when anything else changed (a path added,
 * removed or turned into a link): the caller lists the whole tree.
 */
export async function readGitTreeChanges(
  reader: GitTreeReader,
  subdir: string | null,
  previous: { commit: string; manifest: ArtifactManifest },
  blobs: BlobDir,
  memo: BlobDigestMemo,
  announce?: BlobAnnounce,
): Promise<ArtifactManifest | null> {
  const changes = await reader.diff(previous.commit, subdir);
  if (changes === null) return null;
  const byPath = new Map<string, GitTreeChange>();
  for (const change of changes) {
    if (change.kind !== "file" && change.kind !== "executable") return null;
    if (isAttributes(change.path)) return null;
    byPath.set(change.path, change);
  }
  const unknown = new Set<string>();
  for (const change of changes) if (!stored(memo, blobs, change.objectId)) unknown.add(change.objectId);
  let found = 0;
  for (const entry of previous.manifest.entries) if (entry.type === "file" && byPath.has(entry.path)) found++;
  if (found !== byPath.size) return null; // a change to a path that was not a file: not a content change
  if (announce) {
    // Only the changed files new to the store (see readGitTree): the rest hosts hold already.
    await storeInRounds(reader, unknown, new Set(), new Map(), blobs, memo, announce);
  } else {
    await storeBlobs(reader, unknown, new Set(), blobs, memo);
  }
  const entries: ArtifactEntry[] = previous.manifest.entries.map((entry) => {
    const change = byPath.get(entry.path);
    if (!change) return entry;
    return fileEntry(entry.path, change.kind === "executable", undefined, memo.get(change.objectId));
  });
  return { version: 1, entries };
}

/** Known to the memo and still in the store (a pack removed by hand is read again, not trusted). */
function stored(memo: BlobDigestMemo, blobs: BlobDir, objectId: string): boolean {
  const blob = memo.get(objectId);
  return blob !== undefined && blobs.holds(blob.sha256);
}

function isAttributes(path: string): boolean {
  return path === ".gitattributes" || path.endsWith("/.gitattributes");
}

/** `size`: what git listed, checked against what it gave; undefined where git listed none (a diff). */
function fileEntry(
  path: string,
  executable: boolean,
  size: number | undefined,
  blob: KnownBlob | undefined,
): ArtifactEntry {
  if (!blob || (size !== undefined && blob.size !== size))
    throw refuse(path, "git reported another size than it gave");
  return { path, type: "file", mode: executable ? 0o755 : 0o644, size: blob.size, sha256: blob.sha256 };
}

/**
 * storeBlobs in rounds of about PREFETCH_PACK_BYTES (sizes as git listed
 * them; unknown sizes count by number only), each pack committed and
 * announced before the next is read. Link targets are read in the first round.
 */
async function storeInRounds(
  reader: GitTreeReader,
  unknown: ReadonlySet<string>,
  links: ReadonlySet<string>,
  sizes: ReadonlyMap<string, number>,
  blobs: BlobDir,
  memo: BlobDigestMemo,
  announce: BlobAnnounce,
): Promise<Map<string, string>> {
  const rounds: string[][] = [];
  let round: string[] = [];
  let bytes = 0;
  for (const id of unknown) {
    const size = sizes.get(id) ?? 0;
    if (round.length > 0 && (round.length >= PREFETCH_PACK_BLOBS || bytes + size > PREFETCH_PACK_BYTES)) {
      rounds.push(round);
      round = [];
      bytes = 0;
    }
    round.push(id);
    bytes += size;
  }
  if (round.length > 0 || rounds.length === 0) rounds.push(round);
  const targets = new Map<string, string>();
  for (const [index, ids] of rounds.entries()) {
    const learned: { sha256: string; size: number }[] = [];
    const got = await storeBlobs(reader, new Set(ids), index === 0 ? links : new Set(), blobs, memo, learned);
    for (const [id, target] of got) targets.set(id, target);
    if (learned.length > 0) announce(learned);
  }
  return targets;
}

/**
 * Reads `unknown` blobs into one pack (two files created however many blobs
 * are new) and remembers their digests once the pack is durable; returns
 * the text of the `links` blobs (symlink targets).
 */
async function storeBlobs(
  reader: GitTreeReader,
  unknown: ReadonlySet<string>,
  links: ReadonlySet<string>,
  blobs: BlobDir,
  memo: BlobDigestMemo,
  /** Given: told the blobs stored (once the pack is durable). */
  stored?: { sha256: string; size: number }[],
): Promise<Map<string, string>> {
  const targets = new Map<string, string>();
  if (unknown.size === 0 && links.size === 0) return targets;
  const learned: (KnownBlob & { objectId: string })[] = [];
  const pack = unknown.size > 0 ? blobs.beginPack() : undefined;
  let link: Buffer[] | undefined;
  let packing = false;
  let current = "";
  try {
    await reader.readBlobs([...new Set([...unknown, ...links])], {
      begin(objectId) {
        current = objectId;
        packing = unknown.has(objectId);
        if (packing) pack!.begin();
        link = links.has(objectId) ? [] : undefined;
      },
      data(chunk) {
        if (packing) pack!.write(chunk);
        link?.push(Buffer.from(chunk));
      },
      end() {
        if (packing) learned.push({ objectId: current, ...pack!.finish() });
        if (link) targets.set(current, Buffer.concat(link).toString("utf8"));
        packing = false;
        link = undefined;
      },
    });
    await pack?.commit();
  } catch (error) {
    pack?.abort();
    throw error;
  }
  memo.remember(learned);
  if (stored) for (const blob of learned) stored.push({ sha256: blob.sha256, size: blob.size });
  return targets;
}
