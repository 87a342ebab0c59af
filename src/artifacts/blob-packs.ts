import { createHash, randomBytes } from "node:crypto";
import {
  closeSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeSync,
} from "node:fs";
import path from "node:path";
import { flushFilesystem } from "../fs/flush-filesystem.js";

/**
 * Packs: the new blobs of one bulk build (a git tree read without a
 * checkout) in one file, `packs/<id>.pack`, with an index `packs/<id>.idx`
 * (`<sha256> <offset> <size>` a line). A build that brings 3,000 new files
 * creates two files instead of 3,000: on a busy disk, creating a file costs
 * more than writing its bytes. Blobs stay content-addressed and stored once:
 * a pack holds only blobs the store did not have, and a blob found in several
 * places is served from the first.
 *
 * Crash safety: the index is the pack's only name. The pack and the index are
 * written, flushed, and then the index is renamed into place, so a reader
 * never trusts a pack whose bytes are not on disk; a pack left without an
 * index by a crash is removed an hour later.
 */
export interface PackedBlob {
  pack: string;
  offset: number;
  size: number;
}

export interface PackWriter {
  /** Starts the next blob; write its bytes, then finish it. */
  begin(): void;
  write(chunk: Uint8Array): void;
  finish(): { sha256: string; size: number };
  /** Flushes pack and index and makes them visible. */
  commit(): Promise<void>;
  /** Removes whatever was written. */
  abort(): void;
}

const STALE_MS = 60 * 60 * 1000;
const INDEX_LINE = /^([0-9a-f]{64}) (\d+) (\d+)$/;

export class BlobPacks {
  private index: Map<string, PackedBlob> | undefined;

  constructor(
    private readonly dir: string,
    private readonly durable: boolean,
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
    const close = () => {
      if (open) closeSync(fd);
      open = false;
    };
    return {
      begin() {
        start = offset;
        hash = createHash("sha256");
      },
      write(chunk) {
        hash.update(chunk);
        for (let done = 0; done < chunk.byteLength; ) done += writeSync(fd, chunk, done);
        offset += chunk.byteLength;
      },
      finish() {
        const entry = { sha256: hash.digest("hex"), offset: start, size: offset - start };
        entries.push(entry);
        return { sha256: entry.sha256, size: entry.size };
      },
      commit: async () => {
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
        if (this.durable && !(await flushFilesystem(this.dir))) {
          syncPath(packFile);
          syncPath(tmp);
        }
        renameSync(tmp, indexFile);
        if (this.durable) syncPath(this.dir);
        for (const e of fresh) known.set(e.sha256, { pack: packFile, offset: e.offset, size: e.size });
      },
      abort() {
        close();
        rmSync(packFile, { force: true });
      },
    };
  }

  /** Every index, read once; packs without one (a crash's leftovers) are swept when old. */
  private load(): Map<string, PackedBlob> {
    if (this.index) return this.index;
    const index = new Map<string, PackedBlob>();
    let names: string[] = [];
    try {
      names = readdirSync(this.dir);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
    }
    const indexed = new Set<string>();
    for (const name of names) {
      if (!name.endsWith(".idx") || name.startsWith(".")) continue;
      const pack = path.join(this.dir, `${name.slice(0, -4)}.pack`);
      indexed.add(pack);
      for (const line of readFileSync(path.join(this.dir, name), "utf8").split("\n")) {
        const match = INDEX_LINE.exec(line);
        if (match && !index.has(match[1]!))
          index.set(match[1]!, { pack, offset: Number(match[2]), size: Number(match[3]) });
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

function syncPath(file: string): void {
  const fd = openSync(file, "r");
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
