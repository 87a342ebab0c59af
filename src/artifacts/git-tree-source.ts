import type { GitTreeReader } from "../git/tree-reader.js";
import type { BlobDigestMemo } from "./blob-digest-memo.js";
import type { BlobDir } from "./blob-dir.js";
import { refuse, type TreeBuilder } from "./tree-builder.js";

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
): Promise<boolean> {
  const entries = await reader.list(subdir);
  if (
    entries.some(
      (e) => e.kind === "submodule" || e.path === ".gitattributes" || e.path.endsWith("/.gitattributes"),
    )
  )
    return false;

  const unknown = new Map<string, number>(); // object id → size ls-tree gave
  const linkIds = new Set<string>();
  for (const entry of entries) {
    builder.checkPath(entry.path);
    if (entry.kind === "symlink") linkIds.add(entry.objectId);
    else if (!memo.get(entry.objectId)) unknown.set(entry.objectId, entry.size);
  }

  const targets = new Map<string, string>();
  const learned: { objectId: string; sha256: string; size: number }[] = [];
  // New blobs go into one pack: two files created however many blobs are new.
  const pack = unknown.size > 0 ? blobs.beginPack() : undefined;
  let link: Buffer[] | undefined;
  let packing = false;
  let current = "";
  try {
    await reader.readBlobs([...new Set([...unknown.keys(), ...linkIds])], {
      begin(objectId) {
        current = objectId;
        packing = unknown.has(objectId);
        if (packing) pack!.begin();
        link = linkIds.has(objectId) ? [] : undefined;
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

  const byId = new Map(learned.map((l) => [l.objectId, l]));
  for (const entry of entries) {
    if (entry.kind === "symlink") {
      builder.add({ path: entry.path, type: "symlink", target: targets.get(entry.objectId)! });
      continue;
    }
    const blob = memo.get(entry.objectId) ?? byId.get(entry.objectId);
    if (!blob || blob.size !== entry.size) throw refuse(entry.path, "git reported another size than it gave");
    builder.add({
      path: entry.path,
      type: "file",
      mode: entry.kind === "executable" ? 0o755 : 0o644,
      size: blob.size,
      sha256: blob.sha256,
    });
  }
  return true;
}
