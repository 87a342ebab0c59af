import { createHash, randomBytes } from "node:crypto";
import { Readable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { S3StoreSettings } from "../../src/config/artifact-store-settings.js";
import { isTurnoutError } from "../../src/domain/errors.js";
import { Store } from "../../src/store/store.js";
import { raw } from "../engine/retention-fixtures.js";
import { createTestDatabase, type TestDatabase } from "../helpers/databases.js";
import { type FakeS3, startFakeS3 } from "../helpers/fake-s3.js";

/**
 * The S3 backend of the shared artifact store against a local S3 server that
 * checks every request's SigV4 signature, with its index in a real
 * PostgreSQL schema: bytes in the bucket under content addresses, digests
 * checked on the way in, rows only for what was stored, strays and wrong
 * credentials.
 */
let database: TestDatabase;
let s3: FakeS3;
let store: Store;
const sha = (data: Buffer | string) => createHash("sha256").update(data).digest("hex");

function settings(over: Partial<S3StoreSettings> = {}): S3StoreSettings {
  return {
    kind: "s3",
    bucket: s3.bucket,
    prefix: "t/",
    endpoint: s3.url,
    region: s3.region,
    forcePathStyle: true,
    credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
    ...over,
  };
}

beforeAll(async () => {
  database = await createTestDatabase("postgres");
  // Two pages per listing at most: the collector must follow continuation tokens.
  s3 = await startFakeS3({ pageSize: 2 });
  store = await Store.open({ url: database.url, artifactStore: settings() });
});

afterAll(async () => {
  await store?.close();
  await s3?.close();
  await database?.drop();
});

describe("S3 artifact blobs", () => {
  it("stores blobs under their digest with a verified checksum and reads them back", async () => {
    const small = randomBytes(100);
    const large = randomBytes(3 * 1024 * 1024 + 7);
    await store.artifactBlobs.check?.();
    await store.artifactBlobs.put([
      { sha256: sha(small), size: small.length, open: async () => small },
      {
        sha256: sha(large),
        size: large.length,
        open: async () => Readable.from([large.subarray(0, 1000), large.subarray(1000)]),
      },
    ]);
    expect(s3.objects.get(`t/blobs/${sha(small)}`)?.body.equals(small)).toBe(true);
    expect(s3.objects.get(`t/blobs/${sha(large)}`)?.body.equals(large)).toBe(true);
    expect([...(await store.artifactBlobs.sizes([sha(small), sha(large)])).entries()].sort()).toEqual(
      [
        [sha(small), small.length],
        [sha(large), large.length],
      ].sort(),
    );
    const read = await store.artifactBlobs.readSmall([sha(small)]);
    expect(read.get(sha(small))?.equals(small)).toBe(true);
    const chunks: Buffer[] = [];
    for await (const chunk of store.artifactBlobs.readLarge(sha(large))) chunks.push(chunk);
    expect(Buffer.concat(chunks).equals(large)).toBe(true);
    // No chunk rows: the bytes are the bucket's.
    const chunkRows = await raw(store).selectFrom("artifact_blob_chunks").select("digest").execute();
    expect(chunkRows).toEqual([]);
    // Every request was signed with the right key and accepted.
    expect(s3.requests.filter((r) => r.error)).toEqual([]);
    expect(s3.requests.map((r) => r.operation)).toEqual(
      expect.arrayContaining(["PutObject", "GetObject", "ListObjectsV2"]),
    );
  });

  it("a local copy that does not match its digest is refused: no object, no row", async () => {
    const claimed = sha("what it should be");
    const bytes = Buffer.from("what it is");
    for (const open of [async () => bytes, async () => Readable.from([bytes])]) {
      const error = await store.artifactBlobs
        .put([{ sha256: claimed, size: bytes.length, open }])
        .catch((e: unknown) => e);
      expect(isTurnoutError(error) && error.code).toBe("E_INTERNAL");
      expect(isTurnoutError(error) && error.details?.["sha256"]).toBe(claimed);
      expect(s3.objects.has(`t/blobs/${claimed}`)).toBe(false);
      expect((await store.artifactBlobs.sizes([claimed])).size).toBe(0);
    }
    // The streamed one was refused by the store itself (it checks x-amz-checksum-sha256).
    expect(s3.requests.some((r) => r.error === "BadDigest")).toBe(true);
  });

  it("a blob stored meanwhile by another server is not uploaded again", async () => {
    const bytes = randomBytes(64);
    await store.artifactBlobs.put([{ sha256: sha(bytes), size: bytes.length, open: async () => bytes }]);
    const puts = s3.requests.filter((r) => r.operation === "PutObject").length;
    await store.artifactBlobs.put([
      {
        sha256: sha(bytes),
        size: bytes.length,
        open: async () => Promise.reject(new Error("must not be read")),
      },
    ]);
    expect(s3.requests.filter((r) => r.operation === "PutObject").length).toBe(puts);
  });

  it("two servers storing the same blob at once upload it once: the second waits for the first's row", async () => {
    const other = await Store.open({ url: database.url, artifactStore: settings() });
    try {
      const bytes = randomBytes(2 * 1024 * 1024);
      const blob = { sha256: sha(bytes), size: bytes.length, open: async () => Readable.from([bytes]) };
      await Promise.all([store.artifactBlobs.put([blob]), other.artifactBlobs.put([blob])]);
      const puts = s3.requests.filter(
        (r) => r.operation === "PutObject" && r.key === `t/blobs/${sha(bytes)}`,
      );
      expect(puts).toHaveLength(1);
      expect(s3.objects.get(`t/blobs/${sha(bytes)}`)?.body.equals(bytes)).toBe(true);
      expect(await other.artifactBlobs.touchOrMissing([sha(bytes)])).toEqual(new Set());
    } finally {
      await other.close();
    }
  });

  it("removes old unreferenced objects with their rows, keeps touched ones, and sweeps old strays only", async () => {
    const old = new Date(Date.now() - 7 * 24 * 3_600_000).toISOString();
    const since = new Date(Date.now() - 3_600_000).toISOString();
    const doomed = randomBytes(40);
    const touched = randomBytes(41);
    await store.artifactBlobs.put([
      { sha256: sha(doomed), size: doomed.length, open: async () => doomed },
      { sha256: sha(touched), size: touched.length, open: async () => touched },
    ]);
    await raw(store)
      .updateTable("artifact_blobs")
      .set({ touched_at: old })
      .where("digest", "in", [sha(doomed), sha(touched)])
      .execute();
    // Another server relies on it again before the collector's removal: it stays.
    expect(await store.artifactBlobs.touchOrMissing([sha(touched)])).toEqual(new Set());
    const removed = await store.artifactBlobs.remove([sha(doomed), sha(touched)], since);
    expect(removed).toEqual([{ digest: sha(doomed), size: doomed.length }]);
    expect(s3.objects.has(`t/blobs/${sha(doomed)}`)).toBe(false);
    expect(s3.objects.has(`t/blobs/${sha(touched)}`)).toBe(true);
    expect((await store.artifactBlobs.sizes([sha(doomed)])).size).toBe(0);

    // Strays: objects no row names (a put that never committed). An old one goes, a young one
    // (a put maybe still in flight) stays, and keys outside the store's blobs are not its own.
    const oldStray = randomBytes(10);
    const youngStray = randomBytes(11);
    s3.objects.set(`t/blobs/${sha(oldStray)}`, { body: oldStray, lastModified: new Date(old) });
    s3.objects.set(`t/blobs/${sha(youngStray)}`, { body: youngStray, lastModified: new Date() });
    s3.objects.set("t/other/readme", { body: Buffer.from("x"), lastModified: new Date(old) });
    const strays = await store.artifactBlobs.removeStrays?.(since);
    expect(strays).toEqual([{ digest: sha(oldStray), size: oldStray.length }]);
    expect(s3.objects.has(`t/blobs/${sha(oldStray)}`)).toBe(false);
    expect(s3.objects.has(`t/blobs/${sha(youngStray)}`)).toBe(true);
    expect(s3.objects.has("t/other/readme")).toBe(true);
    expect(s3.objects.has(`t/blobs/${sha(touched)}`)).toBe(true);
    // Its claim on the stray's digest was never committed.
    expect((await store.artifactBlobs.sizes([sha(oldStray)])).size).toBe(0);
  });

  it("wrong credentials: the start-up check fails with E_ARTIFACT_STORE naming S3's code, never the secret", async () => {
    const wrongSecret = "wrong-secret-0123456789abcdefghijklmnop";
    const cases: [Partial<S3StoreSettings>, string][] = [
      [
        { credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: wrongSecret } },
        "SignatureDoesNotMatch",
      ],
      [{ credentials: { accessKeyId: "AKIANOTKNOWN", secretAccessKey: wrongSecret } }, "InvalidAccessKeyId"],
      [{ bucket: "no-such-bucket" }, "NoSuchBucket"],
    ];
    for (const [over, code] of cases) {
      const other = await Store.open({ url: database.url, artifactStore: settings(over) });
      try {
        const error = await other.artifactBlobs.check!().catch((e: unknown) => e);
        expect(isTurnoutError(error) && error.code, code).toBe("E_ARTIFACT_STORE");
        expect(isTurnoutError(error) && error.details?.["s3Code"]).toBe(code);
        expect(String((error as Error).message)).toContain(code);
        expect(String((error as Error).message)).not.toContain(wrongSecret);
        expect(JSON.stringify(error)).not.toContain(wrongSecret);
      } finally {
        await other.close();
      }
    }
    expect(s3.requests.some((r) => r.error === "SignatureDoesNotMatch")).toBe(true);
  });
});
