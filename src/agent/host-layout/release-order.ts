import { open, readFile, rename } from "node:fs/promises";
import { isHostReleaseId } from "../../domain/artifact.js";
import { errorCode, fsyncPath, nonce } from "./fs-util.js";

/**
 * The order releases were staged in, kept in `<root>/<app>/.releases` (one
 * id a line, appended). Prune decides by this file, never by directory
 * timestamps: a `touch` or a restored backup must not change which release
 * is the oldest.
 */

/** Ids oldest first; an id staged again counts at its latest position. */
export async function readOrder(file: string): Promise<string[]> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (error) {
    if (errorCode(error) === "ENOENT") return [];
    throw error;
  }
  const seen = new Map<string, number>();
  text.split("\n").forEach((line, index) => {
    const id = line.trim();
    if (isHostReleaseId(id)) seen.set(id, index);
  });
  return [...seen.entries()].sort((a, b) => a[1] - b[1]).map(([id]) => id);
}

export async function appendOrder(file: string, id: string, fsyncs: boolean): Promise<void> {
  const handle = await open(file, "a", 0o644);
  try {
    await handle.write(`${id}\n`);
    if (fsyncs) await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Replaces the file (after a prune) through a temp file and a rename. */
export async function writeOrder(file: string, ids: readonly string[], fsyncs: boolean): Promise<void> {
  const tmp = `${file}.tmp-${nonce()}`;
  const handle = await open(tmp, "wx", 0o644);
  try {
    await handle.write(ids.map((id) => `${id}\n`).join(""));
    if (fsyncs) await handle.sync();
  } finally {
    await handle.close();
  }
  await rename(tmp, file);
  if (fsyncs) await fsyncPath(file.slice(0, file.lastIndexOf("/")) || "/");
}
