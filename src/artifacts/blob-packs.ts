import { createHash, randomBytes } from "node:crypto";
import {
  closeSync,
  fsyncSync,
  ftruncateSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  renameSync,
  rmSync,
  statSync,
  writeSync,
} from "node:fs";
import path from "node:path";
import type { Durability } from "./write-batch.js";

/**
 * Packs: the new blobs of one bulk write (a git tree read without a
 * checkout, an upload, the small files of a built directory) in one file,
 * `packs/<id>.pack`, with an index `packs/<id>.idx` (`<sha256> <offset>
 * <size>` a line). An upload of 100,000 files creates two files instead of
 * 100,000: creating a file costs far more than writing its bytes. Blobs stay
 * content-addressed and stored once: a pack holds only blobs the store did
 * not have (a blob found stored after it was written is taken back, see
 * drop), and a blob found in several places is served from the first.
 *
 * Crash safety: the index is the pack's only name. The pack and the index are
 * written, flushed (an fsync each: a pack is one file, so this flushes
 * exactly its bytes, where a filesystem flush would also wait for everything
 * else dirty on the disk), and then the index is renamed into place, so a
 * reader never trusts a pack whose bytes are not on disk; a pack left without
 * an index by a crash is removed an hour later.
 *
 * The garbage collector removes a pack whose blobs are all unreferenced, and
 * rewrites one that is mostly dead (rewrite): the live blobs are copied into
 * a new pack, which is made visible before the old index goes, so every
 * blob has a durable home at every moment. A reader that looked a blob up
 * in the old pack and opens it after it is gone looks again (BlobDir).
 */
export interface PackedBlob {
  pack: string;
  offset: number;
  size: number;
}

export interface PackWriter {
  /** Starts the next blob; write its bytes, then finish it (a blob the pack has already is not kept twice). */
  begin(): void;
  write(chunk: Uint8Array): void;
  finish(): { sha256: string; size: number };
  /** Takes back the blob just finished, if it is the last one (stored elsewhere already): the next is written over it. */
  drop(sha256: string): void;
  /** A whole blob whose digest the caller computed. */
  put(sha256: string, bytes: Uint8Array): void;
  /** Whether this pack already holds the blob. */
  has(sha256: string): boolean;
  /** Flushes pack and index and makes them visible. */
  commit(): Promise<void>;
  /** Removes whatever was written. */
  abort(): void;
}

const STALE_MS = 60 * 60 * 1000;
const INDEX_LINE = /^([0-9a-f]{64}) (\d+) (\d+)$/;
/** Bytes copied at a time when a pack is rewritten. */
const COPY_CHUNK = 1024 * 1024;

/** A pack as the collector sees it: every blob its index lists, and when it was made. */
export interface PackInfo {
  pack: string;
  index: string;
  mtimeMs: number;
  /** Bytes of the pack file. */
  bytes: number;
  entries: { sha256: string; offset: number; size: number }[];
}

export class BlobPacks {
  private index: Map<string, PackedBlob> | undefined;

  constructor(
    private readonly dir: string,
    private readonly durable: boolean,
    private readonly durability: Durability,
  ) {}

  locate(sha256: string): PackedBlob | undefined {
    return this.load().get(sha256);
  }

  writer(): PackWriter {
    mkdirSync(this.dir, { recursive: true });
    const id = `${Date.now().toString(36)}-${randomBytes(6).toString("hex")}`;
    const packFile = path.join(this.dir, `${id}.pack`);
    const indexFile = path.join(this.dir, `${id}.idx`);
    const fd = openSync(packFile, "wx", 0o644);
    let open = true;
    let offset = 0;
    let start = 0;
    let hash = createHash("sha256");
    const entries: { sha256: string; offset: number; size: number }[] = [];
    const inPack = new Set<string>();
    const close = () => {
      if (open) closeSync(fd);
      open = false;
    };
    // Positional writes: a dropped blob's bytes are simply written over.
    const append = (chunk: Uint8Array) => {
      for (let done = 0; done < chunk.byteLength; )
        done += writeSync(fd, chunk, done, chunk.byteLength - done, offset + done);
      offset += chunk.byteLength;
    };
    return {
      begin() {
        start = offset;
        hash = createHash("sha256");
      },
      write(chunk) {
        hash.update(chunk);
        append(chunk);
      },
      finish() {
        const entry = { sha256: hash.digest("hex"), offset: start, size: offset - start };
        // Twice in one pack: the first copy stays, this one is written over.
        if (inPack.has(entry.sha256)) offset = start;
        else {
          entries.push(entry);
          inPack.add(entry.sha256);
        }
        return { sha256: entry.sha256, size: entry.size };
      },
      drop(sha256) {
        const last = entries.at(-1);
        if (last?.sha256 !== sha256) return;
        entries.pop();
        inPack.delete(sha256);
        offset = last.offset;
      },
      put(sha256, bytes) {
        entries.push({ sha256, offset, size: bytes.byteLength });
        inPack.add(sha256);
        append(bytes);
      },
      has: (sha256) => inPack.has(sha256),
      commit: async () => {
        // Bytes past the last blob kept (dropped ones) are not the pack's.
        ftruncateSync(fd, offset);
        close();
        const known = this.load();
        const fresh = entries.filter((e) => !known.has(e.sha256));
        if (fresh.length === 0) {
          rmSync(packFile, { force: true });
          return;
        }
        const tmp = path.join(this.dir, `.${id}.idx.tmp`);
        const text = fresh.map((e) => `${e.sha256} ${e.offset} ${e.size}\n`).join("");
        const idx = openSync(tmp, "wx", 0o644);
        try {
          writeSync(idx, text);
        } finally {
          closeSync(idx);
        }
        if (this.durable) {
          await this.durability.fsyncPath(packFile);
          await this.durability.fsyncPath(tmp);
        }
        renameSync(tmp, indexFile);
        if (this.durable) await this.durability.fsyncPath(this.dir);
        for (const e of fresh) known.set(e.sha256, { pack: packFile, offset: e.offset, size: e.size });
      },
      abort() {
        close();
        rmSync(packFile, { force: true });
      },
    };
  }

  /** Every indexed pack with its entries, read from disk now (packs made after this call are not listed). */
  list(): PackInfo[] {
    this.load();
    const packs: PackInfo[] = [];
    for (const name of readdirSafe(this.dir)) {
      if (!name.endsWith(".idx") || name.startsWith(".")) continue;
      const index = path.join(this.dir, name);
      const pack = path.join(this.dir, `${name.slice(0, -4)}.pack`);
      const info = statSync(pack, { throwIfNoEntry: false });
      if (!info) continue;
      packs.push({ pack, index, mtimeMs: info.mtimeMs, bytes: info.size, entries: readIndex(index) });
    }
    return packs;
  }

  /** Whether the blob is served from this pack (a blob in several packs is served from one). */
  serves(sha256: string, pack: string): boolean {
    return this.load().get(sha256)?.pack === pack;
  }

  /** Removes a pack: its index first (its name), then its bytes. Its blobs are no longer held. */
  remove(info: PackInfo): void {
    rmSync(info.index, { force: true });
    if (this.durable) syncPath(this.dir);
    rmSync(info.pack, { force: true });
    this.forget(info.pack);
  }

  /**
   * Replaces a pack by a new one holding only `keep` of its blobs (copied
   * byte for byte), made durable and visible before the old one goes.
   */
  async rewrite(info: PackInfo, keep: ReadonlySet<string>): Promise<void> {
    const kept = info.entries.filter((e) => keep.has(e.sha256));
    if (kept.length === 0) {
      this.remove(info);
      return;
    }
    const id = `${Date.now().toString(36)}-${randomBytes(6).toString("hex")}`;
    const packFile = path.join(this.dir, `${id}.pack`);
    const indexFile = path.join(this.dir, `${id}.idx`);
    const tmp = path.join(this.dir, `.${id}.idx.tmp`);
    const moved: { sha256: string; offset: number; size: number }[] = [];
    const from = openSync(info.pack, "r");
    const to = openSync(packFile, "wx", 0o644);
    try {
      const buffer = Buffer.allocUnsafe(COPY_CHUNK);
      let offset = 0;
      for (const entry of kept) {
        moved.push({ sha256: entry.sha256, offset, size: entry.size });
        for (let done = 0; done < entry.size; ) {
          const n = readSync(
            from,
            buffer,
            0,
            Math.min(buffer.length, entry.size - done),
            entry.offset + done,
          );
          if (n === 0) throw new Error(`pack ${info.pack} is shorter than its index says`);
          for (let written = 0; written < n; ) written += writeSync(to, buffer, written, n - written);
          done += n;
        }
        offset += entry.size;
      }
      if (this.durable) fsyncSync(to);
    } catch (error) {
      closeSync(to);
      rmSync(packFile, { force: true });
      throw error;
    } finally {
      closeSync(from);
    }
    closeSync(to);
    const idx = openSync(tmp, "wx", 0o644);
    try {
      writeSync(idx, moved.map((e) => `${e.sha256} ${e.offset} ${e.size}\n`).join(""));
      if (this.durable) fsyncSync(idx);
    } finally {
      closeSync(idx);
    }
    renameSync(tmp, indexFile);
    if (this.durable) syncPath(this.dir);
    const index = this.load();
    for (const e of moved) index.set(e.sha256, { pack: packFile, offset: e.offset, size: e.size });
    this.remove(info);
  }

  /**
   * Stops serving one blob from the pack that holds it (its bytes there were
   * found damaged): a copy written elsewhere is found instead, and the
   * collector counts the damaged bytes as dead.
   */
  forgetBlob(sha256: string): void {
    this.load().delete(sha256);
  }

  /**
   * Drops a removed pack's blobs from the in-memory index. A blob the
   * collector keeps is never served from a pack it removes (it counts a
   * blob live only in the pack serving it), so what goes here is dead.
   */
  private forget(pack: string): void {
    const index = this.load();
    for (const [sha256, where] of index) if (where.pack === pack) index.delete(sha256);
  }

  /** Every index, read once; packs without one (a crash's leftovers) are swept when old. */
  private load(): Map<string, PackedBlob> {
    if (this.index) return this.index;
    const index = new Map<string, PackedBlob>();
    const names = readdirSafe(this.dir);
    const indexed = new Set<string>();
    for (const name of names) {
      if (!name.endsWith(".idx") || name.startsWith(".")) continue;
      const pack = path.join(this.dir, `${name.slice(0, -4)}.pack`);
      indexed.add(pack);
      for (const e of readIndex(path.join(this.dir, name))) {
        if (!index.has(e.sha256)) index.set(e.sha256, { pack, offset: e.offset, size: e.size });
      }
    }
    const now = Date.now();
    for (const name of names) {
      const file = path.join(this.dir, name);
      const orphan = (name.endsWith(".pack") && !indexed.has(file)) || name.endsWith(".idx.tmp");
      if (orphan && now - (statSync(file, { throwIfNoEntry: false })?.mtimeMs ?? now) > STALE_MS)
        rmSync(file, { force: true });
    }
    this.index = index;
    return index;
  }
}

function readdirSafe(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
    return [];
  }
}

function readIndex(file: string): { sha256: string; offset: number; size: number }[] {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw error;
  }
  const entries: { sha256: string; offset: number; size: number }[] = [];
  for (const line of text.split("\n")) {
    const match = INDEX_LINE.exec(line);
    if (match) entries.push({ sha256: match[1]!, offset: Number(match[2]), size: Number(match[3]) });
  }
  return entries;
}

function syncPath(file: string): void {
  const fd = openSync(file, "r");
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
