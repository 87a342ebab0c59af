import { createHash, randomBytes } from "node:crypto";
import { closeSync, openSync, readSync, statSync } from "node:fs";
import { type FileHandle, mkdir, open, readdir, stat, unlink } from "node:fs/promises";
import path from "node:path";
import { Readable } from "node:stream";
import { isSha256 } from "../domain/artifact.js";
import { notFound, TurnoutError } from "../domain/errors.js";
import { BlobPacks, type PackWriter } from "./blob-packs.js";
import { type Durability, SYSTEM_DURABILITY, type TempBlob, WriteBatch } from "./write-batch.js";

export type { TempBlob } from "./write-batch.js";

/** Bytes read from disk at a time when many blobs are served as one stream. */
const CONCAT_CHUNK = 1024 * 1024;

interface Segment {
  file: string;
  offset: number;
  size: number;
}

/** Where concatenated blobs go: a write that calls back once its chunk may be reused (an HTTP response). */
export interface ChunkSink {
  write(chunk: Buffer, callback: (error?: Error | null) => void): unknown;
}

export interface ConcatenatedBlobs {
  size: number;
  /**
   * Writes every byte; rejects on a read or write error, or when `signal`
   * aborts (a client gone away may never call a pending write back). The
   * sink is then the caller's to destroy.
   */
  writeTo(sink: ChunkSink, signal?: AbortSignal): Promise<void>;
}

async function writeSegments(
  segments: readonly Segment[],
  digests: readonly string[],
  sink: ChunkSink,
  signal: AbortSignal | undefined,
  relocate: (sha256: string) => Segment | undefined,
) {
  const aborted = new Promise<never>((_, reject) => {
    if (signal?.aborted) reject(signal.reason);
    signal?.addEventListener("abort", () => reject(signal.reason), { once: true });
  });
  aborted.catch(() => undefined);
  // No bigger than the answer: a one-file release is a few bytes per host, and two fresh
  // megabytes per request were most of what serving it to a thousand hosts cost (with the GC).
  const total = segments.reduce((sum, s) => sum + s.size, 0);
  const size = Math.max(1, Math.min(CONCAT_CHUNK, total));
  const buffers = [Buffer.allocUnsafe(size), Buffer.allocUnsafe(size)];
  let current = 0;
  let filled = 0;
  let inFlight: Promise<void> = Promise.resolve();
  // Hands the current buffer over and waits for the other one to be free again.
  const flush = async () => {
    const chunk = buffers[current]!.subarray(0, filled);
    const written = new Promise<void>((resolve, reject) =>
      sink.write(chunk, (error) => (error ? reject(error) : resolve())),
    );
    written.catch(() => undefined); // awaited below, on the next flush or at the end
    await Promise.race([inFlight, aborted]);
    inFlight = written;
    current ^= 1;
    filled = 0;
  };
  let fd = -1;
  let openFile = "";
  try {
    for (let [index, segment] of segments.entries()) {
      if (openFile !== segment.file) {
        // Consecutive blobs of one pack share a descriptor.
        if (fd !== -1) closeSync(fd);
        fd = -1;
        openFile = "";
        try {
          fd = openSync(segment.file, "r");
        } catch (error) {
          // The collector rewrote the pack since the lookup: the blob lives on in another file.
          const moved = (error as NodeJS.ErrnoException).code === "ENOENT" && relocate(digests[index]!);
          if (!moved || moved.size !== segment.size) throw error;
          segment = moved;
          fd = openSync(segment.file, "r");
        }
        openFile = segment.file;
      }
      let position = segment.offset;
      let left = segment.size;
      while (left > 0) {
        const buffer = buffers[current]!;
        const n = readSync(fd, buffer, filled, Math.min(left, buffer.length - filled), position);
        // A blob never changes under its name; a short one means the store was tampered with.
        if (n === 0) throw new Error(`blob ${digests[index]} is shorter than it was`);
        filled += n;
        left -= n;
        position += n;
        if (filled === buffer.length) await flush();
      }
    }
    if (filled > 0) await flush();
    await Promise.race([inFlight, aborted]);
  } finally {
    if (fd !== -1) closeSync(fd);
  }
}

/** Temp files older than this belong to a process that died mid-write. */
const STALE_TEMP_MS = 60 * 60 * 1000;

/**
 * Blobs by sha256 under `blobs/<first two hex>/<sha256>`. Blobs are written
 * to `tmp/` (same file system) and named in batches (blob-batch.ts): their
 * data flushed to disk, once for the batch, and only then renamed to their
 * final names, so a crash never leaves a half-written file where a reader
 * trusts its name; renaming over an identical blob is harmless, so writers
 * need no lock. The 256 fan-out directories are made once, up front. Blobs
 * of bulk builds live in packs instead (blob-packs.ts); readers see both.
 */
export class BlobDir {
  readonly blobsDir: string;
  readonly tmpDir: string;
  readonly packs: BlobPacks;
  private ready: Promise<void> | undefined;

  constructor(
    dir: string,
    readonly durable: boolean,
    readonly durability: Durability = SYSTEM_DURABILITY,
  ) {
    this.blobsDir = path.join(dir, "blobs");
    this.tmpDir = path.join(dir, "tmp");
    this.packs = new BlobPacks(path.join(dir, "packs"), durable, durability);
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
    if (this.durable) await this.durability.fsyncPath(this.blobsDir);
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
    return this.holds(sha256);
  }

  /** has(), synchronously: a pack's index is in memory, a loose blob costs one stat. */
  holds(sha256: string): boolean {
    return this.locate(sha256) !== undefined;
  }

  /**
   * Opened before returning, so a missing blob is E_NOT_FOUND and not a
   * stream error later, and a file the collector removes afterwards (a pack
   * it rewrote) is still read whole through the open descriptor.
   */
  async open(sha256: string): Promise<{ stream: Readable; size: number }> {
    this.blobPath(sha256);
    for (let attempt = 0; ; attempt++) {
      const found = this.locate(sha256);
      if (!found) throw notFound(`blob ${sha256}`, { sha256 });
      let handle: FileHandle;
      try {
        handle = await open(found.file, "r");
      } catch (error) {
        // Removed between the lookup and the open: look again (a rewritten pack), once.
        if ((error as NodeJS.ErrnoException).code === "ENOENT" && attempt === 0) continue;
        if ((error as NodeJS.ErrnoException).code === "ENOENT") throw notFound(`blob ${sha256}`, { sha256 });
        throw error;
      }
      if (found.size === 0) {
        await handle.close();
        return { stream: Readable.from([]), size: 0 };
      }
      const stream = handle.createReadStream({
        start: found.offset,
        end: found.offset + found.size - 1,
        highWaterMark: 256 * 1024,
      });
      return { stream, size: found.size };
    }
  }

  /**
   * Many blobs' bytes back to back, in the order asked, with the total for
   * Content-Length. Every blob is looked up before the first byte
   * (E_NOT_FOUND naming the first missing one); `writeTo` then reads them
   * synchronously, a megabyte at a time, into two buffers it recycles, each
   * reused only once the sink's write callback said its bytes are gone.
   * Serving a release to many hosts is gigabytes: a fresh buffer per chunk
   * (what a Readable must push) cost more in page faults and garbage
   * collection than the reads themselves.
   */
  concatenated(digests: readonly string[]): ConcatenatedBlobs {
    const segments = digests.map((sha256) => {
      const found = this.locate(sha256);
      if (!found) throw notFound(`blob ${sha256}`, { sha256 });
      return found;
    });
    return {
      size: segments.reduce((sum, s) => sum + s.size, 0),
      writeTo: (sink, signal) => writeSegments(segments, digests, sink, signal, (sha) => this.locate(sha)),
    };
  }

  /**
   * A whole blob's bytes, wherever it is stored (manifests are loose files,
   * but a file's content may equal a manifest and be in a pack first).
   * Undefined when it is not stored.
   */
  async read(sha256: string): Promise<Buffer | undefined> {
    this.blobPath(sha256);
    for (let attempt = 0; attempt < 2; attempt++) {
      const found = this.locate(sha256);
      if (!found) return undefined;
      let handle: FileHandle;
      try {
        handle = await open(found.file, "r");
      } catch (error) {
        // A pack the collector rewrote since the lookup: look again, once.
        if ((error as NodeJS.ErrnoException).code === "ENOENT") continue;
        throw error;
      }
      try {
        const bytes = Buffer.allocUnsafe(found.size);
        let done = 0;
        while (done < found.size) {
          const { bytesRead } = await handle.read(bytes, done, found.size - done, found.offset + done);
          if (bytesRead === 0) throw new Error(`blob ${sha256} is shorter than it was`);
          done += bytesRead;
        }
        return bytes;
      } finally {
        await handle.close();
      }
    }
    return undefined;
  }

  /** Where a blob's bytes are: a range of a pack (looked up in memory first), or its own file. */
  locate(sha256: string): Segment | undefined {
    const packed = this.packs.locate(sha256);
    if (packed) return { file: packed.pack, offset: packed.offset, size: packed.size };
    const file = this.blobPath(sha256);
    const info = statSync(file, { throwIfNoEntry: false });
    return info?.isFile() ? { file, offset: 0, size: info.size } : undefined;
  }

  /** A pack for the new blobs of one bulk build (see blob-packs.ts). */
  beginPack(): PackWriter {
    return this.packs.writer();
  }

  /** A batch of new loose blobs: write each with writeTemp, add it, then commit them all at once. */
  batch(): WriteBatch {
    return new WriteBatch(this);
  }

  /**
   * Writes bytes to a fresh temp file, hashing them on the way. Not flushed
   * here: the batch the temp goes into flushes all of them before naming any.
   */
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
    } catch (error) {
      await handle.close().catch(() => undefined);
      await unlink(file).catch(() => undefined);
      throw error;
    }
    await handle.close();
    return { file, sha256: hash.digest("hex"), size };
  }

  async discard(temp: TempBlob): Promise<void> {
    await unlink(temp.file).catch(() => undefined);
  }
}

async function writeAll(handle: FileHandle, chunk: Uint8Array): Promise<void> {
  let offset = 0;
  while (offset < chunk.byteLength) {
    const { bytesWritten } = await handle.write(chunk, offset, chunk.byteLength - offset);
    offset += bytesWritten;
  }
}
