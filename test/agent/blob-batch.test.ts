import { createHash } from "node:crypto";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { assertHostConsistent, LocalHostOps } from "../../src/agent/host-layout/index.js";
import {
  type ArtifactEntry,
  type ArtifactManifest,
  hostReleaseId,
  manifestDigest,
} from "../../src/domain/artifact.js";
import type { BlobSource, StageSpec } from "../../src/providers/fleet/host-ops.js";

const sha = (data: Buffer) => createHash("sha256").update(data).digest("hex");

function artifact(count: number) {
  const blobs = new Map<string, Buffer>();
  const entries: ArtifactEntry[] = [{ path: "files", type: "dir", mode: 0o755 }];
  for (let i = 0; i < count; i++) {
    const content = Buffer.from(`file ${i}\n`.repeat(1 + (i % 7)));
    const digest = sha(content);
    blobs.set(digest, content);
    entries.push({
      path: `files/f${String(i).padStart(5, "0")}`,
      type: "file",
      mode: 0o644,
      size: content.length,
      sha256: digest,
    });
  }
  const manifest: ArtifactManifest = { version: 1, entries };
  return { manifest, blobs, id: hostReleaseId(manifestDigest(manifest)) };
}

/**
 * Serves batches back to back (as the server's /blobs/batch does), in chunks
 * that do not line up with blob boundaries, counts requests; `corrupt`
 * changes one blob's bytes (same size).
 */
class BatchSource implements BlobSource {
  readonly requests: string[][] = [];
  readonly opened: string[] = [];
  constructor(
    readonly blobs: Map<string, Buffer>,
    readonly corrupt?: string,
  ) {}
  async open(digest: string): Promise<Readable> {
    this.opened.push(digest);
    return Readable.from([this.blobs.get(digest)!]);
  }
  async openConcatenated(digests: string[]): Promise<Readable> {
    this.requests.push(digests);
    const all = Buffer.concat(
      digests.map((digest) => {
        const data = this.blobs.get(digest)!;
        return digest === this.corrupt ? Buffer.from(data.toString().toUpperCase()) : data;
      }),
    );
    const chunks: Buffer[] = [];
    for (let at = 0; at < all.length; at += 77) chunks.push(all.subarray(at, at + 77));
    return Readable.from(chunks);
  }
}

let root: string;
let host: LocalHostOps;
const live = () => new AbortController().signal;
const spec = (a: ReturnType<typeof artifact>): StageSpec => ({
  app: "web",
  releaseId: a.id,
  manifest: a.manifest,
  shared: [],
  env: {},
  timeoutMs: 10_000,
});
const cacheEntries = async () => {
  const dir = join(root, ".turnout", "blobs");
  const out: string[] = [];
  for (const shard of await readdir(dir).catch(() => [] as string[])) {
    for (const name of await readdir(join(dir, shard))) out.push(shard === "tmp" ? `tmp/${name}` : name);
  }
  return out;
};

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), "turnout-batch-"));
  host = new LocalHostOps({ name: "h1", root, fsyncs: false, killGraceMs: 500 });
});

afterEach(async () => {
  await assertHostConsistent(root);
  await rm(root, { recursive: true, force: true });
});

describe("batched blob fetching (BlobSource.openConcatenated)", () => {
  it("stages 3,000 small blobs in a handful of requests, none per blob", async () => {
    const a = artifact(3000);
    const source = new BatchSource(a.blobs);
    const result = await host.stage(spec(a), source, () => {}, live());
    expect(result.staged).toBe(true);
    expect(result.blobsFetched).toBe(3000);
    expect(result.bytesFetched).toBe([...a.blobs.values()].reduce((n, b) => n + b.length, 0));
    expect(source.opened).toEqual([]);
    expect(source.requests.length).toBeLessThanOrEqual(6);
    expect(source.requests.flat().sort()).toEqual([...a.blobs.keys()].sort());
    expect((await cacheEntries()).filter((n) => !n.startsWith("tmp/")).length).toBe(3000);
    const release = join(root, "web", "releases", a.id);
    expect(await readFile(join(release, "files/f00042"), "utf8")).toBe("file 42\n".repeat(1 + (42 % 7)));

    // Staged again elsewhere: everything is cached, no request at all.
    const again = await new LocalHostOps({ name: "h1", root, fsyncs: false }).stage(
      { ...spec(a), app: "api" },
      source,
      () => {},
      live(),
    );
    expect(again.blobsFetched).toBe(0);
    expect(source.requests.length).toBeLessThanOrEqual(6);
  });

  it("a corrupted entry fails staging and leaves no cache entry of its batch", async () => {
    const a = artifact(40);
    const bad = [...a.blobs.keys()][17]!;
    const source = new BatchSource(a.blobs, bad);
    await expect(host.stage(spec(a), source, () => {}, live())).rejects.toMatchObject({
      code: "E_VALIDATION",
      message: expect.stringContaining(`blob ${bad} does not match its digest`),
    });
    expect(await cacheEntries()).toEqual([]);
    expect(await readdir(join(root, "web", "releases")).catch(() => [])).toEqual([]);
  });

  it("a stream longer or shorter than the blobs asked for fails staging, naming nothing", async () => {
    const a = artifact(10);
    const bytes = (digests: string[]) => Buffer.concat(digests.map((d) => a.blobs.get(d)!));
    const unused = async (): Promise<Readable> => {
      throw new Error("not used");
    };
    const long: BlobSource = {
      open: unused,
      openConcatenated: async (digests) => Readable.from([bytes(digests), Buffer.from("x")]),
    };
    await expect(host.stage(spec(a), long, () => {}, live())).rejects.toMatchObject({
      code: "E_VALIDATION",
      message: expect.stringContaining("more bytes than the manifest says"),
    });
    const short: BlobSource = {
      open: unused,
      openConcatenated: async (digests) => Readable.from([bytes(digests.slice(1))]),
    };
    await expect(host.stage(spec(a), short, () => {}, live())).rejects.toMatchObject({
      code: expect.stringMatching(/E_UNAVAILABLE|E_VALIDATION/),
    });
    const cut: BlobSource = {
      open: unused,
      openConcatenated: async (digests) => Readable.from([bytes(digests).subarray(0, 30)]),
    };
    await expect(host.stage(spec(a), cut, () => {}, live())).rejects.toMatchObject({
      code: expect.stringMatching(/E_UNAVAILABLE|E_VALIDATION/),
    });
    // A stream that breaks (the server went away): the blobs are unavailable, in so many words.
    const broken: BlobSource = {
      open: unused,
      openConcatenated: async (digests) =>
        Readable.from(
          (async function* () {
            yield bytes(digests).subarray(0, 30);
            throw Object.assign(new Error("aborted"), { code: "ECONNRESET" });
          })(),
        ),
    };
    await expect(host.stage(spec(a), broken, () => {}, live())).rejects.toMatchObject({
      code: "E_UNAVAILABLE",
      message: expect.stringContaining("ECONNRESET"),
    });
    expect(await cacheEntries()).toEqual([]);
  });

  it("empty blobs take no bytes of the stream", async () => {
    const empty = Buffer.alloc(0);
    const full = Buffer.from("content\n");
    const entries: ArtifactEntry[] = [
      { path: "a-empty", type: "file", mode: 0o644, size: 0, sha256: sha(empty) },
      { path: "b-full", type: "file", mode: 0o644, size: full.length, sha256: sha(full) },
    ];
    const manifest: ArtifactManifest = { version: 1, entries };
    const a = {
      manifest,
      blobs: new Map([
        [sha(empty), empty],
        [sha(full), full],
      ]),
      id: hostReleaseId(manifestDigest(manifest)),
    };
    const result = await host.stage(spec(a), new BatchSource(a.blobs), () => {}, live());
    expect(result.blobsFetched).toBe(2);
    const release = join(root, "web", "releases", a.id);
    expect(await readFile(join(release, "a-empty"), "utf8")).toBe("");
    expect(await readFile(join(release, "b-full"), "utf8")).toBe("content\n");
  });
});
