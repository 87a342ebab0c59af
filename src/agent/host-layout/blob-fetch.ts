import { createHash } from "node:crypto";
import { closeSync, openSync, rmSync, writeSync } from "node:fs";
import { Readable } from "node:stream";
import { TurnoutError } from "../../domain/errors.js";
import type { BlobSource } from "../../providers/fleet/host-ops.js";
import { mapLimit, raceAbort } from "./fs-util.js";

/**
 * Downloading the blobs a host lacks, straight to where they will live: each
 * blob is written once, at its first path in the staging tree (or a cache
 * temp file when no path of the release holds it), hashed on the way, and
 * checked against its digest and size. Naming it in the cache is the
 * cache's business, afterwards (BlobCache.adopt), once the data is durable.
 *
 * Thousands of small files cost per file, not per byte: blobs come a batch
 * per request, back to back, and are written with synchronous calls (page
 * cache writes; a thread-pool round trip per call cost more than the call).
 */
export interface BlobToFetch {
  sha256: string;
  size: number;
  /** Where the bytes go: a new file, created exclusively. */
  dest: string;
  /** Its mode from birth (read-only: the descriptor that writes it is the only writer). */
  mode: number;
}

/** One request: at most this many blobs or bytes; this many requests at once. */
const BATCH_BLOBS = 1000;
const BATCH_BYTES = 128 * 1024 * 1024;
const BATCHES_IN_FLIGHT = 2;

/** Consecutive runs of `files` within the batch limits (a blob larger than the byte limit goes alone). */
function blobBatches<T extends { size: number }>(files: readonly T[]): T[][] {
  const batches: T[][] = [];
  let current: T[] = [];
  let bytes = 0;
  for (const file of files) {
    if (current.length > 0 && (current.length >= BATCH_BLOBS || bytes + file.size > BATCH_BYTES)) {
      batches.push(current);
      current = [];
      bytes = 0;
    }
    current.push(file);
    bytes += file.size;
  }
  if (current.length > 0) batches.push(current);
  return batches;
}

/**
 * Fetches every blob of `files` (distinct digests) into its `dest`. On
 * failure a destination may hold a partial file: the caller removes the
 * staging tree (and temp files) it handed out. Returns the bytes written.
 */
export async function fetchBlobs(
  files: readonly BlobToFetch[],
  source: BlobSource,
  signal: AbortSignal,
): Promise<number> {
  let bytes = 0;
  await mapLimit(
    blobBatches(files),
    BATCHES_IN_FLIGHT,
    async (batch, inner) => {
      const opening = concatenated(
        source,
        batch.map((f) => f.sha256),
      );
      const stream = await raceAbort(opening, inner).catch((error: unknown) => {
        // Aborted before the source answered: close whatever it hands over later.
        opening.then(
          (late) => late.destroy(),
          () => undefined,
        );
        throw error;
      });
      // Not `+= await`: that would read the total before the await and lose a concurrent batch's bytes.
      const received = await receive(batch, stream, inner);
      bytes += received;
    },
    signal,
  );
  return bytes;
}

/** The blobs' bytes back to back: the source's own exchange, or one `open` after another. */
function concatenated(source: BlobSource, digests: string[]): Promise<Readable> {
  return source.openConcatenated
    ? source.openConcatenated(digests)
    : Promise.resolve(oneByOne(source, digests));
}

/**
 * `open` after `open` as one stream. Destroying it destroys the blob being
 * read, so an abort lands even while a source has stopped sending.
 */
function oneByOne(source: BlobSource, digests: readonly string[]): Readable {
  let index = 0;
  let current: Readable | undefined;
  let opening = false;
  const next = async () => {
    if (index >= digests.length) {
      out.push(null);
      return;
    }
    opening = true;
    try {
      const stream = await source.open(digests[index++]!);
      if (out.destroyed) {
        stream.destroy();
        return;
      }
      current = stream;
      stream.on("data", (chunk: Buffer) => {
        if (!out.push(chunk)) stream.pause();
      });
      stream.once("end", () => {
        current = undefined;
        void next();
      });
      stream.once("error", (error) => out.destroy(error));
    } catch (error) {
      out.destroy(error as Error);
    } finally {
      opening = false;
    }
  };
  const out = new Readable({
    read() {
      if (current) current.resume();
      else if (!opening) void next();
    },
    destroy(error, callback) {
      current?.destroy();
      current = undefined;
      callback(error);
    },
  });
  return out;
}

/**
 * Splits `stream` into `files` by their sizes, each into its destination,
 * hashed on the way; throws at the first blob whose digest or size is off,
 * or when the stream has more or fewer bytes than the blobs asked for.
 */
async function receive(
  files: readonly BlobToFetch[],
  stream: Readable,
  signal: AbortSignal,
): Promise<number> {
  const mismatch = (sha256: string, why: string) =>
    new TurnoutError("E_VALIDATION", `blob ${sha256} does not match its digest (${why})`, { sha256 });
  const onAbort = () => stream.destroy(signal.reason as Error);
  let index = 0;
  let fd = -1;
  let written = 0;
  let total = 0;
  let hash = createHash("sha256");
  const begin = (file: BlobToFetch) => {
    fd = openSync(file.dest, "wx", file.mode);
    hash = createHash("sha256");
    written = 0;
  };
  const finish = (file: BlobToFetch) => {
    closeSync(fd);
    fd = -1;
    const digest = hash.digest("hex");
    if (digest !== file.sha256) {
      rmSync(file.dest, { force: true });
      throw mismatch(file.sha256, `got ${digest.slice(0, 12)}…`);
    }
    total += written;
    index++;
  };
  // Empty blobs take no bytes of the stream: they are done as soon as their turn comes.
  const skipEmpty = () => {
    while (index < files.length && files[index]!.size === 0) {
      begin(files[index]!);
      finish(files[index]!);
    }
  };
  try {
    signal.throwIfAborted();
    signal.addEventListener("abort", onAbort, { once: true });
    skipEmpty();
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      let at = 0;
      while (at < chunk.length) {
        const file = files[index];
        // Stop early rather than fill the disk with more than the manifest promised.
        if (!file) throw mismatch(files[files.length - 1]!.sha256, "more bytes than the manifest says");
        if (fd === -1) begin(file);
        const take = Math.min(chunk.length - at, file.size - written);
        const part = chunk.subarray(at, at + take);
        hash.update(part);
        for (let done = 0; done < part.length; ) done += writeSync(fd, part, done);
        written += take;
        at += take;
        if (written === file.size) {
          finish(file);
          skipEmpty();
        }
      }
    }
    signal.throwIfAborted();
    if (index < files.length) {
      const file = files[index]!;
      if (fd !== -1) throw mismatch(file.sha256, `${written} bytes, the manifest says ${file.size}`);
      throw new TurnoutError(
        "E_UNAVAILABLE",
        `the blob stream ended after ${index} of ${files.length} blobs`,
      );
    }
    return total;
  } catch (error) {
    stream.destroy();
    if (fd !== -1) closeSync(fd);
    if (error instanceof TurnoutError || signal.aborted) throw error;
    // The source's own words for a stream cut short (a reset, "aborted"): the blobs are unavailable.
    const why = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
    throw new TurnoutError(
      "E_UNAVAILABLE",
      `the blob stream broke off after ${index} of ${files.length} blobs (${why})`,
    );
  } finally {
    signal.removeEventListener("abort", onAbort);
  }
}
