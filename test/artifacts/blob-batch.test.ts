import { createHash } from "node:crypto";
import { readdirSync, readlinkSync } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { HttpBlobSource } from "../../src/agent/agent-blobs.js";
import { LocalHostOps } from "../../src/agent/host-layout/index.js";
import { hostReleaseId } from "../../src/domain/artifact.js";
import { enrollHost } from "../helpers/hosts.js";
import { startTurnout, type TestTurnout } from "../helpers/turnout.js";
import { makeTree, realTar, tempDir } from "./helpers.js";

let t: TestTurnout;
let scratch: { dir: string; cleanup(): Promise<void> };
const tokens: Record<string, string> = {};
const sha = (data: string | Buffer) => createHash("sha256").update(data).digest("hex");
const files: Record<string, string> = {};
for (let i = 0; i < 30; i++) files[`f${i}.txt`] = `content of file ${i}\n`.repeat(i * 50 + 1);
files["big.bin"] = "x".repeat(3 * 1024 * 1024 + 7);
let artifactDigest: string;

beforeAll(async () => {
  t = await startTurnout();
  scratch = await tempDir("blob-batch");
  for (const [name, role] of [
    ["viewer", "viewer"],
    ["agent", "agent"],
  ] as const) {
    tokens[name] = (await t.store.tokens.create({ name, role, apps: null, createdBy: "test" })).token;
  }
  await makeTree(path.join(scratch.dir, "tree"), files);
  const res = await fetch(`${t.url}/api/v1/apps/shop/artifacts`, {
    method: "POST",
    headers: { authorization: `Bearer ${t.adminToken}`, "content-type": "application/gzip" },
    body: await realTar(path.join(scratch.dir, "tree"), true),
  });
  expect(res.status).toBe(201);
  artifactDigest = ((await res.json()) as any).artifact.digest;
  // A host the server sent the artifact to, as a fleet deploy does before staging.
  const host = await enrollHost(t.store, "h-1", { apps: ["shop"], labels: [] });
  await t.store.fleet.sendArtifact([host.id], artifactDigest, "shop");
  tokens["host"] = host.token;
}, 30_000);

afterAll(async () => {
  await t?.stop();
  await scratch?.cleanup();
});

const batch = (body: Record<string, unknown>, token = tokens.host!) =>
  fetch(`${t.url}/api/v1/blobs/batch`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: JSON.stringify({ artifact: artifactDigest, ...body }),
  });

describe("POST /api/v1/blobs/batch", () => {
  it("streams the asked blobs back to back, in order, with their total length (host token)", async () => {
    const names = ["big.bin", "f3.txt", "f0.txt", "f29.txt", "f3.txt"];
    const wanted = names.map((f) => sha(files[f]!));
    const res = await batch({ digests: wanted });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("application/octet-stream");
    const expected = Buffer.concat(names.map((f) => Buffer.from(files[f]!)));
    expect(Number(res.headers.get("content-length"))).toBe(expected.length);
    expect(Buffer.from(await res.arrayBuffer()).equals(expected)).toBe(true);
  });

  it("refuses viewers (403), bad digests (400), unknown blobs (404) and empty or oversize lists (400)", async () => {
    const known = sha(files["f1.txt"]!);
    expect((await batch({ digests: [known] }, tokens.viewer)).status).toBe(403);
    expect((await batch({ digests: [known, "../../etc/passwd"] })).status).toBe(400);
    expect((await batch({ digests: [known.toUpperCase()] })).status).toBe(400);
    expect((await batch({ digests: [] })).status).toBe(400);
    expect((await batch({ digests: Array(1001).fill(known) })).status).toBe(400);
    expect((await batch({})).status).toBe(400);
    // A blob that is not stored, or not in the artifact named: the same 404.
    const unknown = await batch({ digests: [known, sha("never stored")] });
    expect(unknown.status).toBe(404);
    expect(((await unknown.json()) as any).error.code).toBe("E_NOT_FOUND");
  });

  it("a client that goes away mid-batch leaves nothing open on the server", async () => {
    const big = sha(files["big.bin"]!);
    const controller = new AbortController();
    const res = await fetch(`${t.url}/api/v1/blobs/batch`, {
      method: "POST",
      headers: { authorization: `Bearer ${tokens.host}`, "content-type": "application/json" },
      body: JSON.stringify({ digests: Array(200).fill(big), artifact: artifactDigest }),
      signal: controller.signal,
    });
    expect(Number(res.headers.get("content-length"))).toBe(200 * Buffer.byteLength(files["big.bin"]!));
    const reader = res.body!.getReader();
    await reader.read();
    controller.abort();
    const openInStore = () =>
      readdirSync("/proc/self/fd").filter((fd) => {
        try {
          return readlinkSync(`/proc/self/fd/${fd}`).includes(`${path.sep}artifacts${path.sep}`);
        } catch {
          return false;
        }
      }).length;
    const deadline = Date.now() + 10_000;
    while (openInStore() > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(openInStore()).toBe(0);
    // And the server still answers.
    expect((await batch({ digests: [big] })).status).toBe(200);
  });

  it("feeds HttpBlobSource.openConcatenated and a host's staging end to end", async () => {
    const source = new HttpBlobSource(t.url, () => [tokens.host!]).forArtifact(artifactDigest);
    const wanted = [sha(files["f7.txt"]!), sha(files["big.bin"]!)];
    const chunks: Buffer[] = [];
    for await (const chunk of await source.openConcatenated(wanted)) chunks.push(chunk as Buffer);
    expect(Buffer.concat(chunks).equals(Buffer.from(files["f7.txt"]! + files["big.bin"]!))).toBe(true);
    await expect(source.openConcatenated([sha("never stored")])).rejects.toMatchObject({
      code: "E_NOT_FOUND",
    });

    const manifest = (await (
      await fetch(`${t.url}/api/v1/artifacts/${artifactDigest}/manifest`, {
        headers: { authorization: `Bearer ${tokens.host}` },
      })
    ).json()) as any;
    const root = await mkdtemp(path.join(tmpdir(), "turnout-batch-host-"));
    try {
      const host = new LocalHostOps({ name: "h", root, fsyncs: false });
      const id = hostReleaseId(artifactDigest);
      const result = await host.stage(
        { app: "shop", releaseId: id, manifest, shared: [], env: {}, timeoutMs: 10_000 },
        source,
        () => {},
        new AbortController().signal,
      );
      expect(result.blobsFetched).toBe(31);
      expect(await readFile(path.join(root, "shop", "releases", id, "f12.txt"), "utf8")).toBe(
        files["f12.txt"],
      );
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });
});
