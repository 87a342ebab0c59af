import { createHash } from "node:crypto";
import { PassThrough, type Readable, Transform, type TransformCallback } from "node:stream";
import { createGunzip } from "node:zlib";
import { type Extract, extract as tarExtract } from "tar-stream";
import { isTurnoutError, TurnoutError } from "../domain/errors.js";
import type { BlobDir } from "./blob-dir.js";
import type { PackWriter } from "./blob-packs.js";
import { DIR_MODE, fileMode, refuse, type TreeBuilder } from "./tree-builder.js";

type TarEntry = Extract extends AsyncIterable<infer E> ? E : never;

export interface TarLimits {
  /** Bytes of the (uncompressed) tar stream; a gzip bomb stops here too. */
  maxBytes: number;
  maxEntries: number;
}

/** Entries up to this size are read into memory and hashed before anything is written. */
const SMALL_ENTRY = 1024 * 1024;

/**
 * A tar stream → entries, and the blobs the store lacks in one new pack,
 * without ever extracting onto a real directory (a hostile archive gets no
 * chance to write through a link it planted). The pack stays invisible until
 * the caller has judged the whole tree and commits it: a refused archive then
 * keeps nothing, and no blob another artifact already relies on is ever
 * deleted. On failure the pack is removed here.
 */
export async function readTar(
  input: Readable,
  limits: TarLimits,
  builder: TreeBuilder,
  blobs: BlobDir,
  pack: PackWriter,
): Promise<void> {
  const extract = tarExtract();
  const counter = new ByteLimit(limits.maxBytes);
  const fail = (error: unknown) => extract.destroy(error as Error);
  input.on("error", fail);
  counter.on("error", fail);
  let entries = 0;
  try {
    const tarBytes = await decompressed(input);
    tarBytes.on("error", fail);
    tarBytes.pipe(counter).pipe(extract as unknown as NodeJS.WritableStream);
    for await (const entry of extract) {
      if (++entries > limits.maxEntries) {
        throw new TurnoutError("E_VALIDATION", `the archive has more than ${limits.maxEntries} entries`, {
          maxEntries: limits.maxEntries,
        });
      }
      await readEntry(entry, builder, blobs, pack);
    }
    if (entries === 0) throw new TurnoutError("E_VALIDATION", "the archive is empty");
  } catch (error) {
    input.unpipe();
    pack.abort();
    throw asArchiveError(error);
  }
}

async function readEntry(
  entry: TarEntry,
  builder: TreeBuilder,
  blobs: BlobDir,
  pack: PackWriter,
): Promise<void> {
  const header = entry.header;
  const path = entryName(header.name);
  if (path === undefined) {
    // The archive's own top directory (`./` from `tar -C dir .`): the tree's root.
    if (header.type !== "directory") throw refuse(header.name, "it names the root of the tree");
    entry.resume();
    return;
  }
  switch (header.type) {
    case "directory":
      entry.resume();
      builder.add({ path, type: "dir", mode: DIR_MODE });
      return;
    case "file":
    case "contiguous-file": {
      builder.checkPath(path);
      const { sha256, size } = await storeEntry(entry, blobs, pack);
      builder.add({ path, type: "file", mode: fileMode(header.mode), size, sha256 });
      return;
    }
    case "symlink":
      entry.resume();
      builder.add({ path, type: "symlink", target: header.linkname ?? "" });
      return;
    case "link": {
      // A hard link shares content, which content addressing gives for free: same blob, own entry.
      entry.resume();
      const targetName = entryName(header.linkname ?? "");
      const target = targetName === undefined ? undefined : builder.get(targetName);
      if (target?.type !== "file") {
        throw refuse(
          path,
          `it is a hard link to ${JSON.stringify(header.linkname)}, not a file of this archive`,
        );
      }
      builder.add({
        path,
        type: "file",
        mode: fileMode(header.mode),
        size: target.size,
        sha256: target.sha256,
      });
      return;
    }
    default:
      entry.resume();
      throw refuse(path, `entries of type ${header.type ?? "unknown"} (devices, fifos, …) are not allowed`);
  }
}

/**
 * A file entry's content into the pack, unless the store (or the pack) has
 * it: a small one is hashed in memory first and written only when new; a
 * large one is written as it arrives and taken back when it turns out known.
 */
async function storeEntry(
  entry: TarEntry,
  blobs: BlobDir,
  pack: PackWriter,
): Promise<{ sha256: string; size: number }> {
  const content = entry as unknown as AsyncIterable<Buffer>;
  if ((entry.header.size ?? 0) <= SMALL_ENTRY) {
    const chunks: Buffer[] = [];
    for await (const chunk of content) chunks.push(chunk);
    const bytes = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
    const sha256 = createHash("sha256").update(bytes).digest("hex");
    if (!pack.has(sha256) && !blobs.holds(sha256)) pack.put(sha256, bytes);
    return { sha256, size: bytes.byteLength };
  }
  pack.begin();
  for await (const chunk of content) pack.write(chunk);
  const stored = pack.finish();
  if (blobs.holds(stored.sha256)) pack.drop(stored.sha256);
  return stored;
}

/**
 * Tar names → artifact paths: one leading `./` and a trailing `/` are how
 * tar spells relative names and directories. Nothing else is cleaned up:
 * `/x`, `../x` or `a//b` are refused by the path rules, not rewritten into
 * something the sender did not write. Returns undefined for the root.
 */
function entryName(name: string): string | undefined {
  let path = name.startsWith("./") ? name.slice(2) : name;
  while (path.endsWith("/") && path.length > 1) path = path.slice(0, -1);
  return path === "" || path === "." ? undefined : path;
}

const GZIP_MAGIC = [0x1f, 0x8b];

/** The tar bytes of `input`, gunzipped when it starts with gzip's magic number. */
async function decompressed(input: Readable): Promise<Readable> {
  const head = await readHead(input, GZIP_MAGIC.length);
  const rest = new PassThrough();
  if (head.length > 0) rest.write(head);
  input.pipe(rest);
  if (head.length < GZIP_MAGIC.length || !GZIP_MAGIC.every((byte, i) => head[i] === byte)) return rest;
  const gunzip = createGunzip();
  rest.on("error", (error) => gunzip.destroy(error));
  return rest.pipe(gunzip);
}

/** Reads at least `size` bytes (or all of a shorter stream) and leaves the stream paused. */
function readHead(input: Readable, size: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let length = 0;
    const done = (error?: Error) => {
      input.off("data", onData);
      input.off("end", onEnd);
      input.off("error", done);
      input.pause();
      if (error) reject(error);
      else resolve(Buffer.concat(chunks));
    };
    const onData = (chunk: Buffer) => {
      chunks.push(chunk);
      length += chunk.length;
      if (length >= size) done();
    };
    const onEnd = () => done();
    input.on("data", onData);
    input.on("end", onEnd);
    input.on("error", done);
  });
}

class ByteLimit extends Transform {
  private seen = 0;
  constructor(private readonly max: number) {
    super();
  }
  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.seen += chunk.length;
    if (this.seen > this.max) {
      callback(
        new TurnoutError("E_PAYLOAD_TOO_LARGE", `the archive is larger than ${this.max} bytes`, {
          maxBytes: this.max,
        }),
      );
      return;
    }
    callback(null, chunk);
  }
}

/** zlib and tar-stream speak of headers and checksums; the caller hears "not a (complete) tar archive". */
function asArchiveError(error: unknown): unknown {
  if (isTurnoutError(error)) return error;
  const { code, message } = error as NodeJS.ErrnoException;
  if (typeof code === "string" && code.startsWith("Z_")) {
    return new TurnoutError("E_VALIDATION", `not a valid gzip stream: ${message}`);
  }
  // tar-stream ends an entry cut short by the end of its input as a "destroyed" stream.
  if (code === "STREAM_DESTROYED")
    return new TurnoutError("E_VALIDATION", "the archive ends within an entry");
  if (/Invalid header|Unexpected end of data|Invalid tar header/i.test(message ?? "")) {
    return new TurnoutError("E_VALIDATION", `not a valid tar archive: ${message}`);
  }
  return error;
}
