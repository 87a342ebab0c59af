import { createHash, randomBytes } from "node:crypto";
import { closeSync, openSync, readSync, renameSync, rmSync, statSync, writeSync } from "node:fs";
import { type FileHandle, mkdir, open, readdir, rename, stat, unlink } from "node:fs/promises";
import path from "node:path";
import { Readable } from "node:stream";
import { isSha256 } from "../domain/artifact.js";
import { notFound, TurnoutError } from "../domain/errors.js";
import { flushFilesystem } from "../fs/flush-filesystem.js";

export interface TempWriter {
  write(chunk: Uint8Array): void;
  finish(): TempBlob;
  /** Closes and removes the temp file. */
  abort(): void;
}

export interface TempBlob {
  /** A file under tmp/, never under its final name until committed. */
  file: string;
  sha256: string;
  size: number;
}

/** Bytes read from disk at a time when many blobs are served as one stream. */
const CONCAT_CHUNK = 1024 * 1024;

/** Temp files older than this belong to a process that died mid-write. */
const STALE_TEMP_MS = 60 * 60 * 1000;

/**
 * Blobs by sha256 under `blobs/<first two hex>/<sha256>`. A blob is written
 * to `tmp/` (same file system), flushed to disk, and only then renamed to
 * its final name, so a crash never leaves a half-written file where a reader
 * trusts its name; renaming over an identical blob is harmless, so writers
 * need no lock. The 256 fan-out directories are made once, up front.
 */
export class BlobDir {
  readonly blobsDir: string;
  readonly tmpDir: string;
  private ready: Promise<void> | undefined;

  constructor(
    dir: string,
    private readonly durable: boolean,
  ) {
    this.blobsDir = path.join(dir, "blobs");
    this.tmpDir = path.join(dir, "tmp");
  }

  ensureReady(): Promise<void> {
    this.ready ??= this.prepare().catch((error: unknown) => {
      this.ready = undefined;
      throw error;
    });
    return this.ready;
  }

  private async prepare(): Promise<void> {
    await mkdir(this.tmpDir, { recursive: true });
    const fanOut = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));
    await Promise.all(fanOut.map((prefix) => mkdir(path.join(this.blobsDir, prefix), { recursive: true })));
    if (this.durable) await syncPath(this.blobsDir);
    const now = Date.now();
    for (const name of await readdir(this.tmpDir)) {
      const file = path.join(this.tmpDir, name);
      const info = await stat(file).catch(() => undefined);
      if (info && now - info.mtimeMs > STALE_TEMP_MS) await unlink(file).catch(() => undefined);
    }
  }

  /** Refuses anything but 64 lowercase hex digits, so no caller can turn a digest into a path elsewhere. */
  blobPath(sha256: string): string {
    if (!isSha256(sha256)) throw new TurnoutError("E_VALIDATION", "a blob digest is 64 lowercase hex digits");
    return path.join(this.blobsDir, sha256.slice(0, 2), sha256);
  }

  async has(sha256: string): Promise<boolean> {
    const info = await stat(this.blobPath(sha256)).catch(() => undefined);
    return info?.isFile() === true;
  }

  /** Opened before returning, so a missing blob is E_NOT_FOUND and not a stream error later. */
  async open(sha256: string): Promise<{ stream: Readable; size: number }> {
    const file = this.blobPath(sha256);
    let handle: FileHandle;
    try {
      handle = await open(file, "r");
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") throw notFound(`blob ${sha256}`, { sha256 });
      throw error;
    }
    try {
      const info = await handle.stat();
      const stream = handle.createReadStream({ highWaterMark: 256 * 1024 });
      return { stream, size: info.size };
    } catch (error) {
      await handle.close();
      throw error;
    }
  }

  /**
   * Many blobs' bytes back to back, in the order asked, as one stream, with
   * the total for Content-Length. Every blob is looked up before the first
   * byte (E_NOT_FOUND naming the first missing one), then each is opened when
   * its turn comes and read synchronously in large chunks as the consumer
   * asks: serving thousands of small blobs to many hosts is per-file cost,
   * not bytes, and a page-cache read costs less than a thread-pool round trip.
   */
  openConcatenated(digests: readonly string[]): { stream: Readable; size: number } {
    const sizes: number[] = [];
    for (const sha256 of digests) {
      const info = statSync(this.blobPath(sha256), { throwIfNoEntry: false });
      if (!info?.isFile()) throw notFound(`blob ${sha256}`, { sha256 });
      sizes.push(info.size);
    }
    const paths = digests.map((d) => this.blobPath(d));
    let index = 0;
    let fd = -1;
    let left = 0;
    const closeCurrent = () => {
      if (fd !== -1) closeSync(fd);
      fd = -1;
    };
    const stream = new Readable({
      highWaterMark: CONCAT_CHUNK,
      read() {
        try {
          const buffer = Buffer.allocUnsafe(CONCAT_CHUNK);
          let filled = 0;
          while (filled < buffer.length && index < paths.length) {
            if (fd === -1) {
              fd = openSync(paths[index]!, "r");
              left = sizes[index]!;
            }
            const n =
              left === 0 ? 0 : readSync(fd, buffer, filled, Math.min(left, buffer.length - filled), null);
            // A blob never changes under its name; a short one means the store was tampered with.
            if (n === 0 && left > 0) throw new Error(`blob ${digests[index]} is shorter than it was`);
            filled += n;
            left -= n;
            if (left === 0) {
              closeCurrent();
              index++;
            }
          }
          if (filled > 0) this.push(filled === buffer.length ? buffer : buffer.subarray(0, filled));
          if (index >= paths.length) this.push(null);
        } catch (error) {
          this.destroy(error as Error);
        }
      },
      destroy(error, callback) {
        closeCurrent();
        callback(error);
      },
    });
    return { stream, size: sizes.reduce((a, b) => a + b, 0) };
  }

  /** Writes bytes to a fresh temp file, hashing them on the way. */
  async writeTemp(source: Uint8Array | AsyncIterable<Uint8Array>): Promise<TempBlob> {
    const file = path.join(this.tmpDir, `${process.pid}-${randomBytes(8).toString("hex")}`);
    const handle = await open(file, "wx", 0o644);
    const hash = createHash("sha256");
    let size = 0;
    try {
      const chunks = source instanceof Uint8Array ? [source] : source;
      for await (const chunk of chunks) {
        hash.update(chunk);
        size += chunk.byteLength;
        await writeAll(handle, chunk);
      }
      if (this.durable) await handle.sync();
    } catch (error) {
      await handle.close().catch(() => undefined);
      await unlink(file).catch(() => undefined);
      throw error;
    }
    await handle.close();
    return { file, sha256: hash.digest("hex"), size };
  }

  /**
   * A temp blob written synchronously as its bytes come, for many blobs in a
   * row (a git tree): no thread-pool round trip and no fsync per blob; the
   * batch is made durable by commitMany.
   */
  beginTemp(): TempWriter {
    const file = path.join(this.tmpDir, `${process.pid}-${randomBytes(8).toString("hex")}`);
    const fd = openSync(file, "wx", 0o644);
    const hash = createHash("sha256");
    let size = 0;
    let open = true;
    const close = () => {
      if (open) closeSync(fd);
      open = false;
    };
    return {
      write(chunk: Uint8Array) {
        hash.update(chunk);
        size += chunk.byteLength;
        for (let done = 0; done < chunk.byteLength; ) done += writeSync(fd, chunk, done);
      },
      finish() {
        close();
        return { file, sha256: hash.digest("hex"), size };
      },
      abort() {
        close();
        rmSync(file, { force: true });
      },
    };
  }

  /**
   * Names many temp blobs at once: their data made durable first (one flush
   * of the filesystem, else an fsync each), then renamed (or dropped where
   * the blob exists), then the renames made durable. Returns how many were new.
   */
  async commitMany(temps: readonly TempBlob[]): Promise<number> {
    if (temps.length === 0) return 0;
    if (this.durable && !(await flushFilesystem(this.tmpDir))) {
      for (const temp of temps) await syncPath(temp.file);
    }
    const touched = new Set<string>();
    let added = 0;
    for (const temp of temps) {
      const final = this.blobPath(temp.sha256);
      if (statSync(final, { throwIfNoEntry: false })?.isFile()) {
        rmSync(temp.file, { force: true });
        continue;
      }
      renameSync(temp.file, final);
      touched.add(path.dirname(final));
      added++;
    }
    if (this.durable && touched.size > 0 && !(await flushFilesystem(this.blobsDir))) await this.sync(touched);
    return added;
  }

  /**
   * Moves a temp blob to its final name, or drops it when that blob exists.
   * Returns whether it was new; `touched` collects the directories to sync.
   */
  async commit(temp: TempBlob, touched: Set<string>): Promise<boolean> {
    const final = this.blobPath(temp.sha256);
    if (await this.has(temp.sha256)) {
      await this.discard(temp);
      return false;
    }
    await rename(temp.file, final);
    touched.add(path.dirname(final));
    return true;
  }

  async discard(temp: TempBlob): Promise<void> {
    await unlink(temp.file).catch(() => undefined);
  }

  /** Makes the renames durable, once per directory rather than once per blob. */
  async sync(touched: Set<string>): Promise<void> {
    if (!this.durable) return;
    await Promise.all([...touched].map(syncPath));
    touched.clear();
  }
}

async function writeAll(handle: FileHandle, chunk: Uint8Array): Promise<void> {
  let offset = 0;
  while (offset < chunk.byteLength) {
    const { bytesWritten } = await handle.write(chunk, offset, chunk.byteLength - offset);
    offset += bytesWritten;
  }
}

/** fsync by path: a file's data, or a directory's entries. */
async function syncPath(dir: string): Promise<void> {
  const handle = await open(dir, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
