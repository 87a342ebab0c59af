import { createHash } from "node:crypto";
import { open, readdir, stat } from "node:fs/promises";
import path from "node:path";
import type { ConfigSnapshot } from "../domain/app-config.js";
import {
  type ConfigLoadStats,
  type ConfigProvider,
  type ConfigStatus,
  emptySnapshot,
  settlesWithin,
} from "./config-provider.js";
import { MAX_MANIFEST_BYTES, STARTUP_WAIT_MS, tooLargeMessage } from "./manifest-limits.js";
import type { ManifestResult } from "./manifest-loader.js";
import { appNameOf, isManifestName } from "./manifest-names.js";
import type { ManifestParser } from "./manifest-parser.js";
import { SingleFlight } from "./single-flight.js";
import { buildSnapshot } from "./snapshot-builder.js";

/**
 * Manifests from a directory, looked at every few seconds. A look costs a
 * `stat` per file when nothing changed: a file whose size, times and inode
 * are those seen last time is neither read nor parsed again. A file that
 * changed is read (at most MAX_MANIFEST_BYTES) and hashed; only when its
 * content is new does it go to the parser, which works in a worker thread
 * (manifest-parser.ts). So a poll never parses on the main thread, and an
 * unchanged directory costs almost nothing however large its manifests.
 *
 * Each app is taken or refused on its own (snapshot-builder.ts).
 */
export interface DirConfigOptions {
  parser: ManifestParser;
  /** How long open() waits for the first load (default STARTUP_WAIT_MS). */
  startupWaitMs?: number;
}

interface FileState {
  /** dev, inode, size, mtime and ctime (nanoseconds). */
  signature: string;
  /**
   * Whether the file had not changed for a while when it was read. A file
   * written in the same clock tick as our read could change again without
   * its times changing (timestamps are coarse), so its signature is trusted
   * only once the file is older than RACY_MS; until then it is read and
   * hashed again (and still not parsed again if its content is the same).
   */
  settled: boolean;
  /** sha256 of the content, or the signature of a file refused unread. */
  identity: string;
  result: ManifestResult;
}

const RACY_MS = 2_000;

export class DirConfigSource implements ConfigProvider {
  private snapshot: ConfigSnapshot = emptySnapshot();
  private files = new Map<string, FileState>();
  private loading: ConfigStatus["loading"] = [];
  private initial = true;
  private reads = 0;
  private readonly first: Promise<boolean>;
  private readonly flight = new SingleFlight(() => this.reload());
  private readonly listeners = new Set<(previous: ConfigSnapshot, next: ConfigSnapshot) => void>();

  private constructor(
    private readonly dir: string,
    private readonly options: DirConfigOptions,
  ) {
    this.first = this.flight.run();
  }

  /** Starts loading `dir`; resolves when the first load is done or the start-up wait is over. */
  static async open(dir: string, options: DirConfigOptions): Promise<DirConfigSource> {
    const source = new DirConfigSource(dir, options);
    await settlesWithin(source.first, options.startupWaitMs ?? STARTUP_WAIT_MS);
    return source;
  }

  current(): ConfigSnapshot {
    return this.snapshot;
  }

  refresh(): Promise<boolean> {
    return this.flight.run();
  }

  async loaded(): Promise<void> {
    await this.first;
  }

  status(): ConfigStatus {
    return {
      source: { kind: "dir", path: this.dir },
      revision: this.snapshot.revision,
      loadedAt: this.snapshot.loadedAt,
      problems: this.snapshot.problems,
      lastError: null,
      loading: this.loading,
    };
  }

  stats(): ConfigLoadStats {
    return { reads: this.reads, parses: this.options.parser.stats().parsed };
  }

  onChange(listener: (previous: ConfigSnapshot, next: ConfigSnapshot) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Looks at the directory; true when the configuration changed. */
  private async reload(): Promise<boolean> {
    const startedAt = Date.now();
    const names = (await readdir(this.dir).catch(() => [] as string[])).filter(isManifestName).sort();
    const next = new Map<string, FileState>();
    const toParse: Array<Omit<FileState, "result"> & { file: string; text: string }> = [];
    for (const name of names) {
      const file = path.join(this.dir, name);
      const info = await stat(file, { bigint: true }).catch(() => undefined);
      if (!info?.isFile()) continue;
      const signature = `${info.dev}:${info.ino}:${info.size}:${info.mtimeNs}:${info.ctimeNs}`;
      const settled = Number(info.ctimeMs) < startedAt - RACY_MS;
      const known = this.files.get(file);
      if (known?.settled && known.signature === signature) {
        next.set(file, known);
        continue;
      }
      if (info.size > BigInt(MAX_MANIFEST_BYTES)) {
        next.set(file, {
          signature,
          settled,
          identity: signature,
          result: refused(file, tooLargeMessage(Number(info.size))),
        });
        continue;
      }
      this.reads += 1;
      const read = await readCapped(file);
      if (typeof read === "string") {
        next.set(file, { signature, settled: false, identity: signature, result: refused(file, read) });
        continue;
      }
      const identity = createHash("sha256").update(read).digest("hex");
      if (known?.identity === identity) {
        next.set(file, { ...known, signature, settled });
        continue;
      }
      toParse.push({ file, signature, settled, identity, text: read.toString("utf8") });
    }

    // Apps not served yet are "loading" while their manifest is parsed; the others keep their version meanwhile.
    this.loading = toParse
      .map(({ file }) => ({ app: appNameOf(file), file }))
      .filter(({ app }) => !this.snapshot.apps.has(app));
    const parsed = new Map<string, FileState>();
    try {
      for (const { text, ...state } of toParse) {
        parsed.set(state.file, { ...state, result: await this.options.parser.parse(state.file, text) });
      }
    } finally {
      this.loading = [];
    }
    // In directory order, whichever files were parsed: the revision and the problems must not depend on it.
    const files = new Map<string, FileState>();
    for (const name of names) {
      const file = path.join(this.dir, name);
      const state = parsed.get(file) ?? next.get(file);
      if (state) files.set(file, state);
    }
    this.files = files;

    const hash = createHash("sha256");
    for (const [file, state] of files) hash.update(`${path.basename(file)}\0${state.identity}\0`);
    const revision = `dir-${hash.digest("hex").slice(0, 16)}`;
    const initial = this.initial;
    this.initial = false;
    if (!initial && revision === this.snapshot.revision) return false;

    const previous = this.snapshot;
    const outcomes = [...files].map(([file, state]) => ({
      app: appNameOf(file),
      label: file,
      result: state.result,
    }));
    this.snapshot = buildSnapshot(previous, revision, outcomes);
    if (!initial) for (const listener of this.listeners) listener(previous, this.snapshot);
    return true;
  }
}

/** The file's bytes, or why it was refused: larger than the cap (it may have grown since its stat), unreadable. */
async function readCapped(file: string): Promise<Buffer | string> {
  let handle: Awaited<ReturnType<typeof open>> | undefined;
  try {
    handle = await open(file, "r");
    const buffer = Buffer.alloc(MAX_MANIFEST_BYTES + 1);
    let filled = 0;
    while (filled < buffer.length) {
      const { bytesRead } = await handle.read(buffer, filled, buffer.length - filled, filled);
      if (bytesRead === 0) break;
      filled += bytesRead;
    }
    if (filled > MAX_MANIFEST_BYTES) return tooLargeMessage((await handle.stat()).size);
    return buffer.subarray(0, filled);
  } catch (error) {
    return `could not be read: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`;
  } finally {
    await handle?.close();
  }
}

function refused(file: string, message: string): ManifestResult {
  return { problems: [{ file, line: null, field: "(file)", message }] };
}
