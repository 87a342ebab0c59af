import { createHash } from "node:crypto";
import { closeSync, openSync, readSync } from "node:fs";

/**
 * The sha256 of a file's bytes, read synchronously in 1 MiB pieces: used to
 * check a cached blob or a release file that cannot be vouched for otherwise
 * (see BlobCache), on the host's own disk, in the middle of synchronous work.
 */
const CHUNK = 1024 * 1024;
let buffer: Buffer | undefined;

export function hashFileSync(path: string): string {
  buffer ??= Buffer.allocUnsafe(CHUNK);
  const hash = createHash("sha256");
  const fd = openSync(path, "r");
  try {
    for (
      let read = readSync(fd, buffer, 0, CHUNK, null);
      read > 0;
      read = readSync(fd, buffer, 0, CHUNK, null)
    )
      hash.update(buffer.subarray(0, read));
  } finally {
    closeSync(fd);
  }
  return hash.digest("hex");
}
