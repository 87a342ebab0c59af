import { createHash, randomBytes } from "node:crypto";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { isTurnoutError } from "../../src/domain/errors.js";
import { raw, released } from "../engine/retention-fixtures.js";
import { createTestDatabase, type TestDatabase } from "../helpers/databases.js";
import { type FakeS3, startFakeS3 } from "../helpers/fake-s3.js";
import { startTurnout, type TestTurnout } from "../helpers/turnout.js";
import { blobFiles, damageBlob } from "./helpers.js";
import { age, get, upload } from "./two-servers.js";

/**
 * Two real servers on one PostgreSQL schema with the S3 artifact store (a
 * local S3 server checking SigV4 on every request): an upload to A lands in
 * the bucket and B serves it, a damaged cached copy is fetched again, a
 * damaged object is never served, retention on one server removes
 * unreferenced objects and keeps referenced ones, and a server with wrong
 * keys does not start.
 */
let database: TestDatabase;
let s3: FakeS3;
let a: TestTurnout;
let b: TestTurnout;
let rootB: string | undefined;
const sha = (data: string | Buffer) => createHash("sha256").update(data).digest("hex");
const key = (digest: string) => `fleet/blobs/${digest}`;

function s3Environment(over: Record<string, string> = {}): Record<string, string> {
  return {
    TURNOUT_ARTIFACT_STORE: "s3",
    TURNOUT_S3_BUCKET: s3.bucket,
    TURNOUT_S3_PREFIX: "fleet",
    TURNOUT_S3_ENDPOINT: s3.url,
    TURNOUT_S3_REGION: s3.region,
    TURNOUT_S3_ACCESS_KEY_ID: s3.accessKeyId,
    TURNOUT_S3_SECRET_ACCESS_KEY: s3.secretAccessKey,
    ...over,
  };
}

beforeAll(async () => {
  s3 = await startFakeS3({ pageSize: 3 });
  database = await createTestDatabase("postgres");
  const shared: TestDatabase = { ...database, drop: async () => undefined };
  a = await startTurnout({ database: shared, environment: s3Environment() });
  rootB = await mkdtemp(path.join(tmpdir(), "turnout-test-s3b-"));
  await mkdir(path.join(rootB, "data"), { recursive: true });
  await writeFile(path.join(rootB, "data", "admin-token"), `${a.adminToken}\n`);
  b = await startTurnout({ reuse: { root: rootB, database: shared }, environment: s3Environment() });
}, 180_000);

afterAll(async () => {
  await a?.stop();
  await b?.stop();
  await database?.drop();
  await s3?.close();
  if (rootB) await rm(rootB, { recursive: true, force: true });
});

const inBucket = (digests: string[]) => digests.filter((d) => s3.objects.has(key(d))).sort();

describe("artifacts with several servers and the S3 store", () => {
  it("an upload to A goes to the bucket (not chunk rows), and B serves its manifest and blobs", async () => {
    const appJs = `console.log(${JSON.stringify(randomBytes(8).toString("hex"))});\n`.repeat(40);
    const big = randomBytes(9 * 1024 * 1024 + 17).toString("base64"); // above the small-batch size: streamed
    const { digest } = await upload(a, { "app.js": appJs, "big.txt": big, "empty.txt": "" });
    const all = [digest, sha(appJs), sha(big), sha("")];
    expect(inBucket(all)).toEqual([...all].sort());
    expect(s3.objects.get(key(sha(big)))?.body.toString("utf8")).toBe(big);
    const chunks = await raw(a.store).selectFrom("artifact_blob_chunks").select("digest").execute();
    expect(chunks).toEqual([]);
    expect(await blobFiles(path.join(b.dataDir, "artifacts"))).not.toContain(sha(big));

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
    expect(await blobFiles(path.join(b.dataDir, "artifacts"))).toEqual(expect.arrayContaining(all));
    // Every request of both servers was signed and accepted.
    expect(s3.requests.filter((r) => r.error)).toEqual([]);
  });

  it("a damaged cached copy is dropped and fetched again from the bucket", async () => {
    const content = `payload ${randomBytes(8).toString("hex")}\n`.repeat(100);
    const { digest } = await upload(a, { "data.txt": content });
    // A's own copy, damaged on disk before A first serves it (it checks a copy once per process).
    await damageBlob(path.join(a.dataDir, "artifacts"), sha(content));
    const gets = () =>
      s3.requests.filter((r) => r.operation === "GetObject" && r.key === key(sha(content))).length;
    const before = gets();
    const res = await get(a, `/api/v1/blobs/${sha(content)}?artifact=${digest}`);
    expect(res.status).toBe(200);
    expect(res.bytes.toString("utf8")).toBe(content);
    expect(gets()).toBe(before + 1);
    const batch = await get(a, "/api/v1/blobs/batch", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ digests: [sha(content)], artifact: digest }),
    });
    expect(sha(batch.bytes)).toBe(sha(content));
  });

  it("an object damaged in the bucket is never served: its digest is checked on the way in", async () => {
    const content = `bucket rot ${randomBytes(8).toString("hex")}\n`;
    const { digest } = await upload(a, { "rot.txt": content });
    s3.objects.get(key(sha(content)))!.body = Buffer.from("not the bytes\n");
    const res = await get(b, `/api/v1/blobs/${sha(content)}?artifact=${digest}`);
    expect(res.status).toBe(500);
    expect(res.bytes.toString("utf8")).not.toContain("not the bytes");
    expect(await blobFiles(path.join(b.dataDir, "artifacts"))).not.toContain(sha(content));
  });

  it("retention on A removes unreferenced objects from the bucket and keeps what B deployed or relies on", async () => {
    const releasedFile = `released ${randomBytes(8).toString("hex")}\n`;
    const { digest: releasedDigest } = await upload(b, { "r.txt": releasedFile });
    const oldFile = `old ${randomBytes(8).toString("hex")}\n`;
    const { digest: oldDigest } = await upload(a, { "old.txt": oldFile });
    const relied = `relied ${randomBytes(8).toString("hex")}\n`;
    const { digest: reliedDigest } = await upload(b, { "x.txt": relied });
    await a.engine.stop();
    await b.engine.stop();
    await released(b.store, releasedDigest);
    await age(b, [releasedDigest, sha(releasedFile), oldDigest, sha(oldFile), reliedDigest, sha(relied)]);
    // B relies on a blob again (as a build finding it stored does) just before A collects.
    expect(await b.store.artifactBlobs.touchOrMissing([sha(relied)])).toEqual(new Set());
    // A stray: an object a put left without a row, long ago.
    const stray = Buffer.from(`stray ${randomBytes(8).toString("hex")}`);
    s3.objects.set(key(sha(stray)), { body: stray, lastModified: new Date(Date.now() - 7 * 86_400_000) });

    const report = await a.server.gc.run({ dryRun: false });
    expect(report.kept.sharedSkipped).toBeUndefined();
    expect(inBucket([oldDigest, sha(oldFile), reliedDigest, sha(stray)])).toEqual([]);
    expect(inBucket([releasedDigest, sha(releasedFile), sha(relied)])).toEqual(
      [releasedDigest, sha(releasedFile), sha(relied)].sort(),
    );
    expect(report.removed.shared?.count).toBeGreaterThanOrEqual(4);
    expect(await a.store.artifacts.find(oldDigest)).toBeUndefined();
    // B serves what was kept and nothing of what went.
    expect((await get(b, `/api/v1/blobs/${sha(releasedFile)}`)).status).toBe(200);
    expect((await get(b, `/api/v1/blobs/${sha(oldFile)}`)).status).toBe(404);
  });

  it("a server with wrong S3 keys refuses to start with E_ARTIFACT_STORE (SignatureDoesNotMatch)", async () => {
    const secret = "definitely-wrong-secret-key-0123456789";
    const error = await startTurnout({
      database: { ...database, drop: async () => undefined },
      environment: s3Environment({ TURNOUT_S3_SECRET_ACCESS_KEY: secret }),
    }).catch((e: unknown) => e);
    expect(isTurnoutError(error) && error.code).toBe("E_ARTIFACT_STORE");
    expect(isTurnoutError(error) && error.details?.["s3Code"]).toBe("SignatureDoesNotMatch");
    expect((error as Error).message).not.toContain(secret);
    expect(s3.requests.at(-1)?.error).toBe("SignatureDoesNotMatch");
  });
});
