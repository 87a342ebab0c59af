import { once } from "node:events";
import type { Writable } from "node:stream";
import { finished } from "node:stream/promises";
import tar from "tar-stream";
import { TurnoutError } from "../../../domain/errors.js";
import type { BlobSource } from "../host-ops.js";

export interface BlobToSend {
  sha256: string;
  size: number;
  /** The cache name: the digest, or the digest and a mode (`<sha256>.555`). */
  name: string;
}

/**
 * Streams blobs into `out` as one tar archive laid out as the host's cache
 * (`<aa>/<sha256>[.<mode>]`), the form the remote script unpacks, verifies
 * and links into the cache. One stream for all blobs: one round trip however many files changed.
 * Resolves with the bytes of blob content sent.
 */
export async function writeBlobTar(
  out: Writable,
  blobs: readonly BlobToSend[],
  source: BlobSource,
  signal: AbortSignal,
): Promise<number> {
  const pack = tar.pack();
  // Whatever waits below also stops when the ssh side goes away.
  let fail: (error: Error) => void = () => undefined;
  const failed = new Promise<never>((_, reject) => {
    fail = reject;
  });
  failed.catch(() => undefined);
  const onOutError = (error: Error) => {
    fail(error);
    pack.destroy(error);
  };
  out.on("error", onOutError);
  const done = finished(out);
  done.catch(() => undefined);
  pack.pipe(out);
  let bytes = 0;
  try {
    for (const blob of blobs) {
      signal.throwIfAborted();
      const input = await source.open(blob.sha256);
      // The entry's callback says when its bytes are in the archive (or why not).
      let entryDone: (error?: Error | null) => void = () => undefined;
      const written = new Promise<void>((resolve, reject) => {
        entryDone = (error) => (error ? reject(error) : resolve());
      });
      written.catch(() => undefined);
      const sink = pack.entry(
        {
          name: `${blob.name.slice(0, 2)}/${blob.name}`,
          size: blob.size,
          mode: 0o644,
          type: "file",
          mtime: new Date(0),
        },
        (error) => entryDone(error),
      );
      let sent = 0;
      try {
        for await (const chunk of input as AsyncIterable<Buffer>) {
          sent += chunk.length;
          if (sent > blob.size) break;
          if (!sink.write(chunk))
            await Promise.race([once(sink as unknown as NodeJS.EventEmitter, "drain"), failed]);
        }
      } finally {
        input.destroy();
      }
      if (sent !== blob.size) {
        const error = new TurnoutError(
          "E_INTERNAL",
          `blob ${blob.sha256} has ${sent > blob.size ? "more" : "fewer"} bytes than the manifest says (${blob.size})`,
        );
        throw error;
      }
      sink.end(Buffer.alloc(0));
      await Promise.race([written, failed]);
      bytes += sent;
    }
    pack.finalize();
    await Promise.race([done, failed]);
    return bytes;
  } catch (error) {
    // A half-sent archive must not end cleanly: the host then refuses it.
    pack.destroy(error as Error);
    throw error;
  } finally {
    out.off("error", onOutError);
  }
}
