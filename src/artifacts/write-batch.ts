import { open, rename, unlink } from "node:fs/promises";
import path from "node:path";
import { flushFilesystem } from "../fs/flush-filesystem.js";
import { forEachLimited } from "./limit.js";

/**
 * How written bytes and new names are made durable. The store asks for it
 * once per batch of blobs, never once per blob: an upload of 100,000 files
 * spent nearly all of its six minutes in one fsync each.
 */
export interface Durability {
  /** One syncfs of the filesystem holding `path`; false where that is not available. */
  flushFilesystem(path: string): Promise<boolean>;
  /** fsync of one file's data, or of one directory's entries. */
  fsyncPath(path: string): Promise<void>;
}

export const SYSTEM_DURABILITY: Durability = {
  flushFilesystem,
  fsyncPath: async (file) => {
    const handle = await open(file, "r");
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  },
};

/** A blob written under a temp name in tmp/ (same filesystem), not yet under its own. */
export interface TempBlob {
  file: string;
  sha256: string;
  size: number;
}

/** Up to this many files (or directories), each is fsynced; more, and the filesystem is flushed once. */
const FSYNC_EACH_UP_TO = 32;
/** fsyncs and renames in flight at once. */
const CONCURRENCY = 16;

/**
 * The one way a blob gets its final name. Blobs are written to tmp/ without
 * a flush each; `commit` then flushes all their data (one syncfs where many,
 * else an fsync each), renames them to their names, and flushes those names
 * the same way. So a name is only ever given to bytes already on disk, and a
 * caller that writes a manifest or a record after `commit` relies only on
 * what survives a crash.
 */
export class WriteBatch {
  private readonly temps: TempBlob[] = [];
  private closed = false;

  constructor(
    private readonly target: {
      tmpDir: string;
      blobPath(sha256: string): string;
      holds(sha256: string): boolean;
      durable: boolean;
      durability: Durability;
    },
  ) {}

  /** Adds a blob already written to tmp/ (see BlobDir.writeTemp). */
  add(temp: TempBlob): void {
    if (this.closed) throw new Error("this write batch is already committed or discarded");
    this.temps.push(temp);
  }

  get size(): number {
    return this.temps.length;
  }

  /** Flush, rename, flush. Returns how many blobs were new to the store. */
  async commit(): Promise<number> {
    this.closed = true;
    const { durable, durability } = this.target;
    const named = new Set<string>();
    const fresh: TempBlob[] = [];
    const dropped: TempBlob[] = [];
    for (const temp of this.temps) {
      // Already stored, or twice in this batch: the first copy is the one named.
      if (named.has(temp.sha256) || this.target.holds(temp.sha256)) dropped.push(temp);
      else {
        named.add(temp.sha256);
        fresh.push(temp);
      }
    }
    try {
      await forEachLimited(dropped, CONCURRENCY, (temp) => unlink(temp.file).catch(() => undefined));
      if (fresh.length === 0) return 0;
      if (durable)
        await flush(
          durability,
          this.target.tmpDir,
          fresh.map((t) => t.file),
        );
      const dirs = new Set<string>();
      await forEachLimited(fresh, CONCURRENCY, async (temp) => {
        const final = this.target.blobPath(temp.sha256);
        await rename(temp.file, final);
        dirs.add(path.dirname(final));
      });
      if (durable) await flush(durability, this.target.tmpDir, [...dirs]);
      return fresh.length;
    } catch (error) {
      await this.discardAll();
      throw error;
    }
  }

  /** Removes every temp of the batch (a refused archive keeps nothing). */
  async discard(): Promise<void> {
    this.closed = true;
    await this.discardAll();
  }

  private async discardAll(): Promise<void> {
    await forEachLimited(this.temps, CONCURRENCY, (temp) => unlink(temp.file).catch(() => undefined));
  }
}

/** A few paths each fsynced; many with one flush of their filesystem (each fsynced where that fails). */
async function flush(durability: Durability, anywhere: string, paths: readonly string[]): Promise<void> {
  if (paths.length > FSYNC_EACH_UP_TO && (await durability.flushFilesystem(anywhere))) return;
  await forEachLimited(paths, CONCURRENCY, (p) => durability.fsyncPath(p));
}
