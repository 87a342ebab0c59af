import { createHash } from "node:crypto";
import { constants } from "node:fs";
import { type FileHandle, open, readdir, readlink, stat } from "node:fs/promises";
import path from "node:path";
import { TurnoutError } from "../domain/errors.js";
import type { BlobDir } from "./blob-dir.js";
import type { ExcludeMatcher } from "./exclude.js";
import { forEachLimited } from "./limit.js";
import { fileMode, refuse, type TreeBuilder } from "./tree-builder.js";

const CONCURRENCY = 16;
/** Files up to this size are read once into memory and written from there when new. */
const SMALL_FILE = 1024 * 1024;
const READ_CHUNK = 1024 * 1024;

interface FoundFile {
  path: string;
  absolute: string;
}

/**
 * A directory → entries and blobs, in two passes: first the whole tree is
 * walked and judged (names, links, special files), so a refused tree stores
 * nothing; then files are hashed and stored, several at a time. Links are
 * never followed: a symlink is kept as one.
 */
export async function readDirectory(
  root: string,
  exclude: ExcludeMatcher,
  builder: TreeBuilder,
  blobs: BlobDir,
  touched: Set<string>,
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
  await forEachLimited(files, CONCURRENCY, async (file) => {
    const { sha256, size, mode } = await storeFile(file, blobs, touched);
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
 * Hashes first and writes only when the blob is new, so rebuilding a tree
 * that barely changed reads it but writes almost nothing. O_NOFOLLOW and
 * O_NONBLOCK: a file swapped for a link or a fifo since the walk is refused,
 * not followed or waited on.
 */
async function storeFile(
  file: FoundFile,
  blobs: BlobDir,
  touched: Set<string>,
): Promise<{ sha256: string; size: number; mode: number }> {
  const handle = await open(
    file.absolute,
    constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK,
  ).catch((error: NodeJS.ErrnoException) => {
    if (error.code === "ELOOP" || error.code === "ENOENT")
      throw refuse(file.path, "it changed while the artifact was made");
    throw error;
  });
  try {
    const info = await handle.stat();
    if (!info.isFile()) throw refuse(file.path, "it changed while the artifact was made");
    const mode = fileMode(info.mode);
    if (info.size <= SMALL_FILE) {
      const content = await handle.readFile();
      const sha256 = createHash("sha256").update(content).digest("hex");
      if (!(await blobs.has(sha256))) await blobs.commit(await blobs.writeTemp(content), touched);
      return { sha256, size: content.byteLength, mode };
    }
    const { sha256, size } = await hashHandle(handle);
    if (!(await blobs.has(sha256))) {
      const temp = await blobs.writeTemp(handle.createReadStream({ start: 0, autoClose: false }));
      if (temp.sha256 !== sha256) {
        await blobs.discard(temp);
        throw refuse(file.path, "it changed while the artifact was made");
      }
      await blobs.commit(temp, touched);
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
