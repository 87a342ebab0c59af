import { readdir, stat, unlink } from "node:fs/promises";
import path from "node:path";
import { isSha256 } from "../domain/artifact.js";
import { emptyAmount, type GcAmount, packFate } from "../domain/retention.js";
import type { BlobDigestMemo } from "./blob-digest-memo.js";
import type { BlobDir } from "./blob-dir.js";
import type { PackInfo } from "./blob-packs.js";
import { forEachLimited } from "./limit.js";

/** What the store holds on disk, listed at one moment (files made later are not in it, so never removed). */
export interface DiskInventory {
  loose: Map<string, { size: number; mtimeMs: number }>;
  packs: PackInfo[];
  temps: { file: string; size: number; mtimeMs: number }[];
}

export interface SweepOptions {
  now: number;
  /** Files written this recently stay. */
  graceMs: number;
}

/** What a sweep removes. */
export interface SweepPlan {
  loose: { sha256: string; size: number }[];
  packs: PackInfo[];
  rewrites: { info: PackInfo; keep: Set<string>; freed: number }[];
  temps: { file: string; size: number }[];
  /** Bytes of blobs, packs and temp files once the plan is carried out (indexes and the memo aside). */
  keptBytes: number;
}

export interface SweepResult {
  blobs: GcAmount;
  packs: GcAmount;
  repacked: GcAmount;
  temp: GcAmount;
}

const STAT_CONCURRENCY = 16;

/**
 * The disk side of garbage collection (the engine's GarbageCollector decides
 * what is referenced): lists the store, turns artifact digests into the set
 * of blobs they need, plans what to remove and removes it. Removing happens
 * only inside the store's exclusive section (ArtifactStore.collect), after
 * the references were read again there.
 */
export class ArtifactCollector {
  constructor(
    private readonly blobs: BlobDir,
    private readonly memo: BlobDigestMemo,
    /** Called once blobs were removed: cached trees that name them must not be reused. */
    private readonly onRemoved: () => void,
  ) {}

  async inventory(): Promise<DiskInventory> {
    const loose = new Map<string, { size: number; mtimeMs: number }>();
    const prefixes = (await readdir(this.blobs.blobsDir).catch(() => [] as string[])).filter((p) =>
      /^[0-9a-f]{2}$/.test(p),
    );
    await forEachLimited(prefixes, 4, async (prefix) => {
      const dir = path.join(this.blobs.blobsDir, prefix);
      const names = (await readdir(dir).catch(() => [] as string[])).filter(isSha256);
      await forEachLimited(names, STAT_CONCURRENCY, async (name) => {
        const info = await stat(path.join(dir, name)).catch(() => undefined);
        if (info?.isFile()) loose.set(name, { size: info.size, mtimeMs: info.mtimeMs });
      });
    });
    const temps: DiskInventory["temps"] = [];
    for (const name of await readdir(this.blobs.tmpDir).catch(() => [] as string[])) {
      const file = path.join(this.blobs.tmpDir, name);
      const info = await stat(file).catch(() => undefined);
      if (info?.isFile()) temps.push({ file, size: info.size, mtimeMs: info.mtimeMs });
    }
    return { loose, packs: this.blobs.packs.list(), temps };
  }

  /**
   * Adds to `live` each artifact's manifest and every blob it names. A
   * digest whose manifest is not here (or is no manifest) is returned as
   * missing. `hostReleases` are hosts' release ids (the first 16 hex of a
   * digest): every stored manifest they name counts too.
   */
  async markLive(
    digests: Iterable<string>,
    hostReleases: ReadonlySet<string>,
    inventory: DiskInventory,
    live: Set<string>,
  ): Promise<string[]> {
    const roots = new Set<string>();
    for (const digest of digests) if (isSha256(digest)) roots.add(digest);
    if (hostReleases.size > 0) {
      for (const sha256 of inventory.loose.keys())
        if (hostReleases.has(sha256.slice(0, 16))) roots.add(sha256);
      for (const pack of inventory.packs)
        for (const e of pack.entries) if (hostReleases.has(e.sha256.slice(0, 16))) roots.add(e.sha256);
    }
    const missing: string[] = [];
    for (const digest of roots) {
      if (live.has(digest)) continue;
      const blobs = await this.manifestBlobs(digest);
      if (!blobs) {
        // Not a manifest here: keep the blob itself if it is one, and say the artifact is missing.
        if (this.blobs.holds(digest)) live.add(digest);
        else missing.push(digest);
        continue;
      }
      live.add(digest);
      for (const sha256 of blobs) live.add(sha256);
    }
    return missing;
  }

  /** What to remove: what `live` does not name and is older than the grace. */
  plan(inventory: DiskInventory, live: ReadonlySet<string>, options: SweepOptions): SweepPlan {
    const old = (mtimeMs: number) => options.now - mtimeMs >= options.graceMs;
    const plan: SweepPlan = { loose: [], packs: [], rewrites: [], temps: [], keptBytes: 0 };
    for (const [sha256, info] of inventory.loose) {
      if (!live.has(sha256) && old(info.mtimeMs)) plan.loose.push({ sha256, size: info.size });
      else plan.keptBytes += info.size;
    }
    for (const info of inventory.packs) {
      // A blob counts in the pack that serves it; a second copy elsewhere is dead weight.
      const keep = new Set<string>();
      let liveBytes = 0;
      for (const e of info.entries) {
        if (!live.has(e.sha256) || !this.blobs.packs.serves(e.sha256, info.pack)) continue;
        keep.add(e.sha256);
        liveBytes += e.size;
      }
      const fate = old(info.mtimeMs) ? packFate(liveBytes, info.bytes, keep.size) : "keep";
      if (fate === "remove") plan.packs.push(info);
      else if (fate === "rewrite") {
        plan.rewrites.push({ info, keep, freed: info.bytes - liveBytes });
        plan.keptBytes += liveBytes;
      } else plan.keptBytes += info.bytes;
    }
    for (const temp of inventory.temps) {
      if (old(temp.mtimeMs)) plan.temps.push({ file: temp.file, size: temp.size });
      else plan.keptBytes += temp.size;
    }
    return plan;
  }

  /**
   * Carries a plan out: temps, loose blobs, whole packs, then rewrites; then
   * the memo forgets blobs no longer held. Call only in the exclusive section.
   */
  async sweep(plan: SweepPlan): Promise<SweepResult> {
    const result: SweepResult = {
      blobs: emptyAmount(),
      packs: emptyAmount(),
      repacked: emptyAmount(),
      temp: emptyAmount(),
    };
    await forEachLimited(plan.temps, STAT_CONCURRENCY, async (temp) => {
      if (await removed(temp.file)) add(result.temp, temp.size);
    });
    await forEachLimited(plan.loose, STAT_CONCURRENCY, async (blob) => {
      if (await removed(this.blobs.blobPath(blob.sha256))) add(result.blobs, blob.size);
    });
    for (const info of plan.packs) {
      this.blobs.packs.remove(info);
      add(result.packs, info.bytes);
    }
    for (const { info, keep, freed } of plan.rewrites) {
      await this.blobs.packs.rewrite(info, keep);
      add(result.repacked, freed);
    }
    if (plan.loose.length + plan.packs.length + plan.rewrites.length > 0) {
      this.memo.retain((sha256) => this.blobs.holds(sha256));
      this.onRemoved();
    }
    return result;
  }

  /**
   * The blobs an artifact's manifest names, read straight from the store:
   * a manifest's name is its content's digest, checked when it was stored,
   * so it is not hashed and validated again (thousands of entries each).
   */
  blobsOfManifest(digest: string): Promise<string[] | undefined> {
    return this.manifestBlobs(digest);
  }

  private async manifestBlobs(digest: string): Promise<string[] | undefined> {
    const bytes = await this.blobs.read(digest).catch(() => undefined);
    if (!bytes) return undefined;
    let parsed: unknown;
    try {
      parsed = JSON.parse(bytes.toString("utf8"));
    } catch {
      return undefined;
    }
    const manifest = parsed as { version?: unknown; entries?: unknown };
    if (manifest?.version !== 1 || !Array.isArray(manifest.entries)) return undefined;
    const blobs: string[] = [];
    for (const entry of manifest.entries as { type?: unknown; sha256?: unknown }[]) {
      if (entry?.type === "file" && typeof entry.sha256 === "string") blobs.push(entry.sha256);
    }
    return blobs;
  }
}

function add(amount: GcAmount, bytes: number): void {
  amount.count++;
  amount.bytes += bytes;
}

async function removed(file: string): Promise<boolean> {
  try {
    await unlink(file);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return false;
    throw error;
  }
}
