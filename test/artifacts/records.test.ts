import { beforeEach, describe, expect, it } from "vitest";
import type { Store } from "../../src/store/store.js";
import { BACKENDS, useTestStore } from "../helpers/databases.js";

describe.each(BACKENDS)("artifact records on %s", (backend) => {
  const current = useTestStore(backend);
  let store: Store;
  beforeEach(() => {
    store = current();
  });

  const digest = (c: string) => c.repeat(64);

  it("records once, lists newest first, reads bytes as numbers", async () => {
    const big = 5 * 1024 * 1024 * 1024; // above 32 bits: bigint on PostgreSQL
    await store.artifacts.record({
      digest: digest("a"),
      app: "shop",
      fingerprint: "fp1",
      files: 3,
      bytes: big,
      source: "built",
    });
    await new Promise((r) => setTimeout(r, 5));
    await store.artifacts.record({
      digest: digest("b"),
      app: "shop",
      fingerprint: null,
      files: 1,
      bytes: 9,
      source: "uploaded",
    });
    // Idempotent: the same digest again changes nothing and does not throw.
    await store.artifacts.record({
      digest: digest("a"),
      app: "shop",
      fingerprint: "fp1",
      files: 3,
      bytes: big,
      source: "built",
    });

    expect(await store.artifacts.find(digest("a"))).toMatchObject({
      digest: digest("a"),
      bytes: big,
      files: 3,
      source: "built",
      fingerprint: "fp1",
    });
    expect((await store.artifacts.list("shop", 10)).map((a) => a.digest)).toEqual([digest("b"), digest("a")]);
    expect((await store.artifacts.list("shop", 1)).map((a) => a.digest)).toEqual([digest("b")]);
    expect(await store.artifacts.list("blog", 10)).toEqual([]);
    await expect(store.artifacts.get(digest("c"))).rejects.toMatchObject({ code: "E_NOT_FOUND" });
  });

  it("an uploaded artifact later built for a release gains that fingerprint", async () => {
    await store.artifacts.record({
      digest: digest("d"),
      app: "shop",
      fingerprint: null,
      files: 1,
      bytes: 1,
      source: "uploaded",
    });
    await store.artifacts.record({
      digest: digest("d"),
      app: "shop",
      fingerprint: "fp9",
      files: 1,
      bytes: 1,
      source: "built",
    });
    const info = await store.artifacts.get(digest("d"));
    expect(info).toMatchObject({ fingerprint: "fp9", source: "uploaded" });
  });

  it("finds an artifact by the key of the build that made it: several keys may name one artifact, a key names one", async () => {
    for (const c of ["e", "f"]) {
      await store.artifacts.record({
        digest: digest(c),
        app: "shop",
        fingerprint: null,
        files: 1,
        bytes: 1,
        source: "built",
      });
    }
    await store.artifacts.recordBuild("shop", "key-staging", digest("e"));
    await store.artifacts.recordBuild("shop", "key-production", digest("e"));
    // The same key again (two workers racing on one build) keeps the first.
    await store.artifacts.recordBuild("shop", "key-staging", digest("f"));
    expect((await store.artifacts.byBuildKey("shop", "key-staging"))?.digest).toBe(digest("e"));
    expect((await store.artifacts.byBuildKey("shop", "key-production"))?.digest).toBe(digest("e"));
    expect(await store.artifacts.byBuildKey("shop", "key-other")).toBeUndefined();
    expect(await store.artifacts.byBuildKey("blog", "key-staging")).toBeUndefined();
    // A key whose artifact is not (or no longer) recorded finds nothing.
    await store.artifacts.recordBuild("shop", "key-gone", digest("9"));
    expect(await store.artifacts.byBuildKey("shop", "key-gone")).toBeUndefined();
  });
});
