import { createHash } from "node:crypto";
import { closeSync, constants, fstatSync, openSync, readSync } from "node:fs";
import { type FileHandle, open, readdir, readlink, stat } from "node:fs/promises";
import path from "node:path";
import { setImmediate as yieldToEvents } from "node:timers/promises";
import { TurnoutError } from "../domain/errors.js";
import type { BlobDir } from "./blob-dir.js";
import type { PackWriter } from "./blob-packs.js";
import type { ExcludeMatcher } from "./exclude.js";
import { type BlobAnnounce, PREFETCH_PACK_BYTES } from "./git-tree-source.js";
import { forEachLimited } from "./limit.js";
import { fileMode, refuse, type TreeBuilder } from "./tree-builder.js";
import type { WriteBatch } from "./write-batch.js";

const CONCURRENCY = 16;
/** Files up to this size are read once into memory and written from there when new. */
const SMALL_FILE = 1024 * 1024;
const READ_CHUNK = 1024 * 1024;
/** Small files read between two turns of the event loop (the server keeps answering meanwhile). */
const SMALL_FILES_PER_TURN = 256;
const OPEN_FLAGS = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK;

interface FoundFile {
  path: string;
  absolute: string;
}

/**
 * A directory → entries and blobs, in two passes: first the whole tree is
 * walked and judged (names, links, special files), so a refused tree stores
 * nothing; then files are hashed and the new ones written: small ones read
 * with synchronous calls (a thread-pool round trip per call cost several
 * times the call: 100,000 files) into one pack, large ones several at a
 * time as loose blobs into a batch. The caller commits both: a flush or two
 * for the tree, not one per file. Links are never followed: a symlink is
 * kept as one.
 */
export async function readDirectory(
  root: string,
  exclude: ExcludeMatcher,
  builder: TreeBuilder,
  blobs: BlobDir,
  out: { pack: PackWriter; batch: WriteBatch },
  /** Told of blobs as they become readable (fleet prefetch): then the pack is committed in rounds. */
  announce?: BlobAnnounce,
): Promise<void> {
  // A build that produced no output directory should say so, not fail on ENOENT.
  const info = await stat(root).catch(() => undefined);
  if (!info?.isDirectory()) {
    throw new TurnoutError(
      "E_VALIDATION",
      `the artifact directory ${root} does not exist or is not a directory`,
      {
        dir: root,
      },
    );
  }
  const files = await walk(root, exclude, builder);
  const large: FoundFile[] = [];
  // With an announce: the blobs of the packs this build writes (not those stored before, which
  // hosts mostly hold already; see readGitTree).
  let ready: { sha256: string; size: number }[] = [];
  let packed: { sha256: string; size: number }[] = [];
  let packedBytes = 0;
  for (const [index, file] of files.entries()) {
    if (index % SMALL_FILES_PER_TURN === SMALL_FILES_PER_TURN - 1) {
      if (announce) {
        if (packedBytes >= PREFETCH_PACK_BYTES) {
          // This round's pack committed (durable, visible) and a new one begun: hosts may fetch it now.
          await out.pack.commit();
          out.pack = blobs.beginPack();
          ready.push(...packed);
          packed = [];
          packedBytes = 0;
        }
        if (ready.length > 0) announce(ready);
        ready = [];
      }
      await yieldToEvents();
    }
    const stored = storeSmallFile(file, blobs, out.pack);
    if (stored) {
      builder.add({ path: file.path, type: "file", ...stored });
      if (announce) {
        if (!blobs.holds(stored.sha256)) {
          packed.push({ sha256: stored.sha256, size: stored.size });
          packedBytes += stored.size;
        }
      }
    } else large.push(file);
  }
  if (announce && ready.length > 0) announce(ready);
  // A new large file is named when the batch commits, with the manifest: none goes ahead.
  await forEachLimited(large, CONCURRENCY, async (file) => {
    const { sha256, size, mode } = await storeFile(file, blobs, out.batch);
    builder.add({ path: file.path, type: "file", mode, size, sha256 });
  });
}

async function walk(root: string, exclude: ExcludeMatcher, builder: TreeBuilder): Promise<FoundFile[]> {
  const files: FoundFile[] = [];
  const pending: string[] = [""];
  while (pending.length > 0) {
    const dir = pending.pop()!;
    const absoluteDir = dir === "" ? root : path.join(root, dir);
    for (const dirent of await readdir(absoluteDir, { withFileTypes: true })) {
      // Only the workspace's own .git: a directory named .git deeper down is content.
      if (dir === "" && dirent.name === ".git") continue;
      const relative = dir === "" ? dirent.name : `${dir}/${dirent.name}`;
      const absolute = path.join(absoluteDir, dirent.name);
      if (exclude(relative, dirent.isDirectory())) continue;
      if (dirent.isDirectory()) {
        builder.add({ path: relative, type: "dir", mode: 0o755 });
        pending.push(relative);
      } else if (dirent.isFile()) {
        builder.checkPath(relative);
        files.push({ path: relative, absolute });
      } else if (dirent.isSymbolicLink()) {
        builder.add({ path: relative, type: "symlink", target: await readlink(absolute) });
      } else {
        throw refuse(relative, "it is a special file (fifo, socket or device)");
      }
    }
  }
  return files;
}

/**
 * A file of at most SMALL_FILE bytes: read whole, hashed, and put into the
 * pack when the store lacks it (so rebuilding a tree that barely changed
 * reads it but writes almost nothing). Undefined, having read nothing, for a
 * larger file. O_NOFOLLOW and O_NONBLOCK: a file swapped for a link or a
 * fifo since the walk is refused, not followed or waited on.
 */
function storeSmallFile(
  file: FoundFile,
  blobs: BlobDir,
  pack: PackWriter,
): { sha256: string; size: number; mode: number } | undefined {
  let fd: number;
  try {
    fd = openSync(file.absolute, OPEN_FLAGS);
  } catch (error) {
    throw changedOr(file, error);
  }
  try {
    const info = fstatSync(fd);
    if (!info.isFile()) throw refuse(file.path, "it changed while the artifact was made");
    if (info.size > SMALL_FILE) return undefined;
    // One byte more than the size: a file that grew since the stat is noticed, not cut.
    const buffer = Buffer.allocUnsafe(info.size + 1);
    let size = 0;
    while (size < buffer.length) {
      const n = readSync(fd, buffer, size, buffer.length - size, size);
      if (n === 0) break;
      size += n;
    }
    if (size !== info.size) throw refuse(file.path, "it changed while the artifact was made");
    const content = buffer.subarray(0, size);
    const sha256 = createHash("sha256").update(content).digest("hex");
    if (!pack.has(sha256) && !blobs.holds(sha256)) pack.put(sha256, content);
    return { sha256, size, mode: fileMode(info.mode) };
  } finally {
    closeSync(fd);
  }
}

function changedOr(file: FoundFile, error: unknown): unknown {
  const code = (error as NodeJS.ErrnoException).code;
  return code === "ELOOP" || code === "ENOENT"
    ? refuse(file.path, "it changed while the artifact was made")
    : error;
}

/**
 * A large file: hashed first and written (streamed to a loose blob) only
 * when the store lacks it.
 */
async function storeFile(
  file: FoundFile,
  blobs: BlobDir,
  batch: WriteBatch,
): Promise<{ sha256: string; size: number; mode: number }> {
  const handle = await open(file.absolute, OPEN_FLAGS).catch((error: unknown) => {
    throw changedOr(file, error);
  });
  try {
    const info = await handle.stat();
    if (!info.isFile()) throw refuse(file.path, "it changed while the artifact was made");
    const mode = fileMode(info.mode);
    const { sha256, size } = await hashHandle(handle);
    if (!blobs.holds(sha256)) {
      const temp = await blobs.writeTemp(handle.createReadStream({ start: 0, autoClose: false }));
      if (temp.sha256 !== sha256) {
        await blobs.discard(temp);
        throw refuse(file.path, "it changed while the artifact was made");
      }
      batch.add(temp);
    }
    return { sha256, size, mode };
  } finally {
    await handle.close();
  }
}

async function hashHandle(handle: FileHandle): Promise<{ sha256: string; size: number }> {
  const hash = createHash("sha256");
  const buffer = Buffer.allocUnsafe(READ_CHUNK);
  let size = 0;
  for (;;) {
    const { bytesRead } = await handle.read(buffer, 0, buffer.length, size);
    if (bytesRead === 0) break;
    hash.update(buffer.subarray(0, bytesRead));
    size += bytesRead;
  }
  return { sha256: hash.digest("hex"), size };
}
