import { createHash, randomBytes } from "node:crypto";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { sql } from "kysely";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { raw, released } from "../engine/retention-fixtures.js";
import { createTestDatabase, type TestDatabase } from "../helpers/databases.js";
import { startTurnout, type TestTurnout } from "../helpers/turnout.js";
import { blobFiles, damageBlob } from "./helpers.js";
import { age, get, upload } from "./two-servers.js";

/**
 * Two real servers on one PostgreSQL database, each with its own data
 * directory: artifacts written on one are served by the other (read through
 * the shared store), a damaged cache entry is fetched again, and retention
 * on one never removes what the other is writing or deploying.
 */
let database: TestDatabase;
let a: TestTurnout;
let b: TestTurnout;
let rootB: string | undefined;
const sha = (data: string | Buffer) => createHash("sha256").update(data).digest("hex");

beforeAll(async () => {
  database = await createTestDatabase("postgres");
  // Both servers share it; it is dropped once, after both stopped.
  const shared: TestDatabase = { ...database, drop: async () => undefined };
  a = await startTurnout({ database: shared });
  // The admin token is in the database already: B's data directory gets A's, as an operator would copy it.
  rootB = await mkdtemp(path.join(tmpdir(), "turnout-test-b-"));
  await mkdir(path.join(rootB, "data"), { recursive: true });
  await writeFile(path.join(rootB, "data", "admin-token"), `${a.adminToken}\n`);
  b = await startTurnout({ reuse: { root: rootB, database: shared } });
}, 180_000);

afterAll(async () => {
  await a?.stop();
  await b?.stop();
  await database?.drop();
  if (rootB) await rm(rootB, { recursive: true, force: true });
});

async function sharedHas(t: TestTurnout, digests: string[]): Promise<string[]> {
  return [...(await t.store.artifactBlobs.sizes(digests)).keys()].sort();
}

describe("artifacts with several servers (PostgreSQL)", () => {
  it("an upload to A is published to the shared store before it is recorded, and B serves its manifest and blobs", async () => {
    const appJs = `console.log(${JSON.stringify(randomBytes(8).toString("hex"))});\n`.repeat(40);
    const big = randomBytes(3 * 1024 * 1024 + 17).toString("base64"); // several chunk rows
    const { digest } = await upload(a, { "app.js": appJs, "big.txt": big, "empty.txt": "" });
    const files = [sha(appJs), sha(big), sha("")];
    expect(await sharedHas(a, [digest, ...files])).toEqual([digest, ...files].sort());
    // Nothing of it is in B's data directory yet.
    expect(await blobFiles(path.join(b.dataDir, "artifacts"))).not.toContain(sha(big));

    const described = await get(b, `/api/v1/artifacts/${digest}`);
    expect(described.status).toBe(200);
    const body = JSON.parse(described.bytes.toString("utf8"));
    expect(body.artifact.digest).toBe(digest);
    expect(body.manifest.entries.map((e: { path: string }) => e.path).sort()).toEqual([
      "app.js",
      "big.txt",
      "empty.txt",
    ]);

    const manifest = await get(b, `/api/v1/artifacts/${digest}/manifest`);
    expect(manifest.status).toBe(200);
    expect(sha(manifest.bytes)).toBe(digest);

    const blob = await get(b, `/api/v1/blobs/${sha(big)}?artifact=${digest}`);
    expect(blob.status).toBe(200);
    expect(blob.bytes.toString("utf8")).toBe(big);

    const batch = await get(b, "/api/v1/blobs/batch", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ digests: [sha(appJs), sha(""), sha(big)], artifact: digest }),
    });
    expect(batch.status).toBe(200);
    expect(batch.bytes.toString("utf8")).toBe(appJs + big);
    // Read through: B keeps what it fetched.
    expect(await blobFiles(path.join(b.dataDir, "artifacts"))).toEqual(
      expect.arrayContaining([digest, ...files]),
    );
  });

  it("a blob neither server nor the shared store holds is 404 on B", async () => {
    const missing = sha(randomBytes(16));
    const res = await get(b, `/api/v1/blobs/${missing}`);
    expect(res.status).toBe(404);
    expect(JSON.parse(res.bytes.toString("utf8")).error.code).toBe("E_NOT_FOUND");
  });

  it("a damaged cache entry is dropped and fetched again from the shared store", async () => {
    const content = `payload ${randomBytes(8).toString("hex")}\n`.repeat(100);
    const { digest } = await upload(a, { "data.txt": content });
    await damageBlob(path.join(a.dataDir, "artifacts"), sha(content));
    const res = await get(a, `/api/v1/blobs/${sha(content)}?artifact=${digest}`);
    expect(res.status).toBe(200);
    expect(res.bytes.toString("utf8")).toBe(content);
    // And the batch route serves the good copy too.
    const batch = await get(a, "/api/v1/blobs/batch", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ digests: [sha(content)], artifact: digest }),
    });
    expect(sha(batch.bytes)).toBe(sha(content));
  });

  it("retention on A removes an unreferenced old artifact from the shared store, with its record", async () => {
    const content = `old ${randomBytes(8).toString("hex")}\n`;
    const { digest } = await upload(a, { "old.txt": content });
    await age(a, [digest, sha(content)]);
    const report = (await a.api("POST", "/api/v1/gc", { dryRun: false })).body.gc;
    expect(report.removed.shared.count).toBeGreaterThanOrEqual(2);
    expect(await sharedHas(a, [digest, sha(content)])).toEqual([]);
    expect(await a.store.artifacts.find(digest)).toBeUndefined();
    // B never cached it: it is gone for B too.
    expect((await get(b, `/api/v1/blobs/${sha(content)}`)).status).toBe(404);
  });

  it("a collection already running on another server makes this one leave the shared store alone", async () => {
    const content = `skipped ${randomBytes(8).toString("hex")}\n`;
    const { digest } = await upload(a, { "s.txt": content });
    await age(a, [digest, sha(content)]);
    let report: any;
    await b.store.artifactBlobs.exclusively(async () => {
      report = (await a.api("POST", "/api/v1/gc", { dryRun: false })).body.gc;
    });
    expect(report.kept.sharedSkipped).toBe(true);
    expect(await sharedHas(a, [digest, sha(content)])).toEqual([digest, sha(content)].sort());
  });

  it("retention on A keeps an artifact whose release B deployed, and blobs B is in the middle of writing", async () => {
    // Released: referenced by an environment's current release.
    const releasedFile = `released ${randomBytes(8).toString("hex")}\n`;
    const { digest: releasedDigest } = await upload(b, { "r.txt": releasedFile });

    // B mid-write: a new blob put (as publish does before the manifest) and an old one it found stored
    // and relies on (touched), neither recorded yet.
    const fresh = Buffer.from(`fresh ${randomBytes(8).toString("hex")}`);
    const relied = `relied ${randomBytes(8).toString("hex")}\n`;
    const { digest: reliedDigest } = await upload(b, { "x.txt": relied });
    // The fixture claims the deploy itself: no worker of either server may take it first
    // (and neither server takes uploads after this: the test that stops them comes last).
    await a.engine.stop();
    await b.engine.stop();
    await released(b.store, releasedDigest);
    await age(b, [releasedDigest, sha(releasedFile), reliedDigest, sha(relied)]);
    await b.store.artifactBlobs.put([
      { sha256: sha(fresh), size: fresh.length, open: async () => streamOf(fresh) },
    ]);
    expect(await b.store.artifactBlobs.touchOrMissing([sha(relied)])).toEqual(new Set());

    const report = await a.server.gc.run({ dryRun: false });
    expect(report.kept.sharedSkipped).toBeUndefined();
    expect(await sharedHas(a, [releasedDigest, sha(releasedFile), sha(fresh), sha(relied)])).toEqual(
      [releasedDigest, sha(releasedFile), sha(fresh), sha(relied)].sort(),
    );
    // The unreferenced manifest of `relied` was old and untouched: it went (the guard is per blob).
    expect(await sharedHas(a, [reliedDigest])).toEqual([]);

    // Once B's touch is old too, nothing protects the relied-on blob any more: the guard is what kept it.
    await age(b, [sha(relied)]);
    await a.server.gc.run({ dryRun: false });
    expect(await sharedHas(a, [sha(relied)])).toEqual([]);
    expect(await sharedHas(a, [releasedDigest, sha(releasedFile)])).toEqual(
      [releasedDigest, sha(releasedFile)].sort(),
    );
  });

  it("the shared store's rows are the migration's tables", async () => {
    const { rows } = await sql<{ n: string }>`SELECT count(*) AS n FROM artifact_blob_chunks`.execute(
      raw(a.store),
    );
    expect(Number(rows[0]!.n)).toBeGreaterThan(0);
  });
});

async function streamOf(bytes: Buffer) {
  const { Readable } = await import("node:stream");
  return Readable.from([bytes]);
}
