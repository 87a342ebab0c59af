import { createHash } from "node:crypto";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { assertHostConsistent, LocalHostOps } from "../../src/agent/host-layout/index.js";
import { type ArtifactManifest, hostReleaseId, manifestDigest } from "../../src/domain/artifact.js";
import type { BlobSource } from "../../src/providers/fleet/host-ops.js";

/**
 * The host side of prefetch (agent protocol 3): blobs offered before their
 * release is staged go into the blob cache, verified like staged ones; a
 * bad one leaves nothing behind; and a stage call that arrives while a
 * prefetch runs waits for it instead of fetching the same blobs again.
 */
const sha = (data: Buffer) => createHash("sha256").update(data).digest("hex");

/** Serves blobs from memory, counts what was asked, and can hold answers back until released. */
class MemorySource implements BlobSource {
  readonly opened: string[] = [];
  readonly blobs = new Map<string, Buffer>();
  gate: Promise<void> = Promise.resolve();
  async open(digest: string): Promise<Readable> {
    this.opened.push(digest);
    await this.gate;
    const blob = this.blobs.get(digest);
    if (!blob) throw new Error(`no blob ${digest}`);
    return Readable.from([blob]);
  }
}

function release(count: number) {
  const source = new MemorySource();
  const entries: ArtifactManifest["entries"] = [];
  for (let i = 0; i < count; i++) {
    const content = Buffer.from(`file ${i} `.repeat(100 + i));
    source.blobs.set(sha(content), content);
    entries.push({
      path: `f${String(i).padStart(3, "0")}`,
      type: "file",
      mode: 0o644,
      size: content.length,
      sha256: sha(content),
    });
  }
  const manifest: ArtifactManifest = { version: 1, entries };
  const blobs = entries.flatMap((e) => (e.type === "file" ? [{ sha256: e.sha256, size: e.size }] : []));
  return { manifest, blobs, source, id: hostReleaseId(manifestDigest(manifest)) };
}

const live = () => new AbortController().signal;
const grant = "a".repeat(64);
let root: string;
let host: LocalHostOps;

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), "turnout-prefetch-host-"));
  host = new LocalHostOps({ name: "h1", root, fsyncs: false });
});
afterEach(async () => {
  await assertHostConsistent(root);
  await rm(root, { recursive: true, force: true });
});

const stageSpec = (r: ReturnType<typeof release>) => ({
  app: "web",
  releaseId: r.id,
  manifest: r.manifest,
  shared: [],
  env: {},
  timeoutMs: 10_000,
});
const tmpFiles = async () => readdir(join(root, ".turnout", "blobs", "tmp")).catch(() => [] as string[]);

describe("prefetch on the host", () => {
  it("puts verified blobs in the cache; staging then fetches none of them", async () => {
    const r = release(20);
    const result = await host.prefetch("web", grant, r.blobs, r.source, live());
    expect(result).toEqual({ fetched: 20, bytes: r.blobs.reduce((s, b) => s + b.size, 0), cached: 0 });
    for (const b of r.blobs) expect(host.cache.has(b.sha256, b.size)).toBe(true);
    expect(await tmpFiles()).toEqual([]);

    // Offered again: all there already.
    expect(await host.prefetch("web", grant, r.blobs, r.source, live())).toEqual({
      fetched: 0,
      bytes: 0,
      cached: 20,
    });
    const asked = r.source.opened.length;
    const lines: string[] = [];
    const staged = await host.stage(stageSpec(r), r.source, (l) => lines.push(l), live());
    expect(staged).toMatchObject({ staged: true, blobsFetched: 0 });
    expect(r.source.opened.length).toBe(asked);
    expect(lines).toContain(`staging ${r.id}: 20 files, fetching 0 of 20 blobs (0 bytes)`);
  });

  it("a blob whose bytes do not match fails the prefetch and leaves no name or temp file; staging fetches it", async () => {
    const r = release(3);
    const bad = r.blobs[1]!;
    const good = r.source.blobs.get(bad.sha256)!;
    r.source.blobs.set(bad.sha256, Buffer.alloc(good.length, 0x78));
    await expect(host.prefetch("web", grant, r.blobs, r.source, live())).rejects.toMatchObject({
      code: "E_VALIDATION",
    });
    expect(host.cache.has(bad.sha256, bad.size)).toBe(false);
    expect(await tmpFiles()).toEqual([]);

    r.source.blobs.set(bad.sha256, good);
    const staged = await host.stage(stageSpec(r), r.source, () => undefined, live());
    expect(staged.staged).toBe(true);
    expect(staged.blobsFetched).toBeGreaterThanOrEqual(1);
  });

  it("a stage call behind a running prefetch waits for it rather than fetching the blobs twice", async () => {
    const r = release(10);
    let open!: () => void;
    r.source.gate = new Promise((resolve) => {
      open = resolve;
    });
    const prefetching = host.prefetch("web", grant, r.blobs, r.source, live());
    const lines: string[] = [];
    const staging = host.stage(stageSpec(r), r.source, (l) => lines.push(l), live());
    // Held back until the stage call has had time to reach the cache; whichever comes first, no blob is fetched twice.
    setTimeout(open, 300);
    expect((await prefetching)?.fetched).toBe(10);
    expect(await staging).toMatchObject({ staged: true, blobsFetched: 0 });
    expect(lines).toContain(`staging ${r.id}: 10 files, fetching 0 of 10 blobs (0 bytes)`);
    // Each blob asked for once, by the prefetch.
    expect(new Set(r.source.opened).size).toBe(r.source.opened.length);
  });

  it("a cancelled prefetch leaves no temp files and no half blob", async () => {
    const r = release(5);
    const controller = new AbortController();
    r.source.gate = new Promise(() => undefined);
    const prefetching = host.prefetch("web", grant, r.blobs, r.source, controller.signal);
    controller.abort(new Error("deploy cancelled"));
    await expect(prefetching).rejects.toThrow();
    for (const b of r.blobs) expect(host.cache.has(b.sha256, b.size)).toBe(false);
    expect(await tmpFiles()).toEqual([]);
  });
});
