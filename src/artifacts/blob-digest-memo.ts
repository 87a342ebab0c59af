import { closeSync, fsyncSync, openSync, readFileSync, renameSync, writeSync } from "node:fs";
import path from "node:path";

export interface KnownBlob {
  sha256: string;
  size: number;
}

/**
 * What the store has learned of git blobs: object id → sha256 and size of a
 * blob it holds. Git object ids are content addresses too, so a tree whose
 * ids are all known becomes a manifest without reading a byte of content:
 * a one-file change hashes one file, not the whole tree.
 *
 * An append-only file beside the blobs (`<id> <sha256> <size>` a line), so
 * it lives and dies with them: a line is appended only after its blob is
 * durable, and a store whose directory is removed forgets both together. A
 * line cut short by a crash does not parse and is ignored. Read once, on
 * first use; one process owns a data directory. When the collector removes
 * blobs, the file is rewritten without their lines (retain), so a memo hit
 * names a blob the store holds (and a hit whose blob is gone anyway is read
 * again by git-tree-source, not trusted).
 */
export class BlobDigestMemo {
  private known: Map<string, KnownBlob> | undefined;

  constructor(
    private readonly file: string,
    private readonly durable: boolean,
  ) {}

  get(objectId: string): KnownBlob | undefined {
    return this.load().get(objectId);
  }

  remember(entries: readonly (KnownBlob & { objectId: string })[]): void {
    if (entries.length === 0) return;
    const known = this.load();
    const lines = entries
      .filter((e) => !known.has(e.objectId))
      .map((e) => `${e.objectId} ${e.sha256} ${e.size}\n`)
      .join("");
    if (lines === "") return;
    const fd = openSync(this.file, "a", 0o644);
    try {
      writeSync(fd, lines);
      if (this.durable) fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    for (const e of entries) known.set(e.objectId, { sha256: e.sha256, size: e.size });
  }

  /**
   * Keeps only the entries whose blob `keep` accepts: the file is rewritten
   * (a temp file flushed, then renamed over it). Returns how many went.
   */
  retain(keep: (sha256: string) => boolean): number {
    const known = this.load();
    let dropped = 0;
    for (const [objectId, blob] of known) {
      if (keep(blob.sha256)) continue;
      known.delete(objectId);
      dropped++;
    }
    if (dropped === 0) return 0;
    const tmp = `${this.file}.tmp`;
    const fd = openSync(tmp, "w", 0o644);
    try {
      const lines: string[] = [];
      for (const [objectId, blob] of known) lines.push(`${objectId} ${blob.sha256} ${blob.size}\n`);
      writeSync(fd, lines.join(""));
      if (this.durable) fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, this.file);
    if (this.durable) {
      const dir = openSync(path.dirname(this.file), "r");
      try {
        fsyncSync(dir);
      } finally {
        closeSync(dir);
      }
    }
    return dropped;
  }

  private load(): Map<string, KnownBlob> {
    if (this.known) return this.known;
    const known = new Map<string, KnownBlob>();
    let text = "";
    try {
      text = readFileSync(this.file, "utf8");
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
    }
    for (const line of text.split("\n")) {
      const match = LINE.exec(line);
      if (match) known.set(match[1]!, { sha256: match[2]!, size: Number(match[3]) });
    }
    this.known = known;
    return known;
  }
}

const LINE = /^([0-9a-f]{40}|[0-9a-f]{64}) ([0-9a-f]{64}) (\d+)$/;
