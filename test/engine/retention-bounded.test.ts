import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ArtifactStore } from "../../src/artifacts/artifact-store.js";
import { GarbageCollector } from "../../src/engine/garbage-collector.js";
import type { Store } from "../../src/store/store.js";
import { tempDir } from "../artifacts/helpers.js";
import { useTestStore } from "../helpers/databases.js";
import { until } from "../helpers/wait.js";
import { artifactOf, bytesUnder, isComplete, raw, released, retention } from "./retention-fixtures.js";

/**
 * Point 17: 200 releases (two environments taking turns, a few uploads
 * nobody deploys, every deploy with a log) through the real stores, the
 * collector running after every 20 deploys as the server's would. Disk use
 * under artifacts/ and log rows stay bounded by the retention, whatever the
 * number of releases, and every release kept can still be rolled back to:
 * its artifact is whole.
 */
const RELEASES = 200;
const KEEP_RELEASES = 10;
const KEEP_LOGS = 20;
const CHANGED_FILES = 5;
const CHANGED_BYTES = 8 * 1024;

describe("retention over 200 releases", () => {
  const current = useTestStore("sqlite");
  let store: Store;
  let scratch: { dir: string; cleanup(): Promise<void> };
  let artifacts: ArtifactStore;
  let storeDir: string;

  beforeEach(async () => {
    store = current();
    scratch = await tempDir("retention-200");
    storeDir = path.join(scratch.dir, "artifacts");
    artifacts = new ArtifactStore({ dir: storeDir });
  });
  afterEach(async () => {
    await scratch.cleanup();
  });

  it("keeps disk use and log rows bounded, and every kept release whole", async () => {
    const gc = new GarbageCollector({
      store,
      artifacts,
      settings: retention({ releases: KEEP_RELEASES, logs: KEEP_LOGS, logAgeMs: 0 }),
      // A zero grace keeps what was recorded in the collection's own millisecond; a clock a little ahead
      // makes every upload before the collection older than the grace, as the assertion below expects.
      now: () => Date.now() + 5,
    });
    // A built tree: 25 files that never change, 5 that change with every release.
    const tree = path.join(scratch.dir, "tree");
    for (let f = 0; f < 25; f++) {
      await mkdir(path.join(tree, "lib"), { recursive: true });
      await writeFile(path.join(tree, "lib", `stable-${f}.js`), `stable ${f}\n`.repeat(200));
    }
    let written = 0;
    const afterCollections: number[] = [];
    for (let n = 1; n <= RELEASES; n++) {
      for (let f = 0; f < CHANGED_FILES; f++) {
        const content = `release ${n} file ${f} `.padEnd(CHANGED_BYTES, String(n % 10));
        await writeFile(path.join(tree, `changed-${f}.txt`), content);
      }
      written += CHANGED_FILES * CHANGED_BYTES;
      const stored = await artifacts.hold(async () => {
        const built = await artifacts.fromDirectory(tree);
        await store.artifacts.record({
          digest: built.digest,
          app: "shop",
          fingerprint: `fp-${n}`,
          files: built.files,
          bytes: built.bytes,
          source: "built",
        });
        return built;
      });
      const log = `==> shop#${n}\n${"output line\n".repeat(50)}`;
      await released(store, stored.digest, { env: n % 2 === 0 ? "production" : "staging", log });
      // Now and then an upload that is never deployed.
      if (n % 25 === 0)
        await artifactOf(
          store,
          artifacts,
          { "upload.txt": `upload ${n}\n`.repeat(500) },
          { source: "uploaded" },
        );
      if (n % 20 === 0) {
        await gc.run({ dryRun: false });
        afterCollections.push(await bytesUnder(storeDir));
        await assertRetained(n);
      }
    }
    // 200 releases' changes were written; 20 releases' are kept (plus what they share).
    expect(written).toBe(RELEASES * CHANGED_FILES * CHANGED_BYTES);
    const last = afterCollections.at(-1)!;
    expect(last).toBeLessThan(written / 5);
    // Bounded: the store is no bigger after 200 releases than after 40 (same shape retained each time).
    expect(last).toBeLessThanOrEqual(afterCollections[1]! * 1.1);
  }, 240_000);

  /** After a collection at release `n`: the newest releases whole, older ones gone, logs of the newest only. */
  async function assertRetained(n: number): Promise<void> {
    for (const env of ["staging", "production"]) {
      const history = await store.releases.history("shop", env, 200);
      const kept = history.slice(0, KEEP_RELEASES);
      for (const release of kept) expect(await isComplete(artifacts, release.artifact!)).toBe(true);
      for (const release of history.slice(KEEP_RELEASES)) {
        expect(await store.artifacts.find(release.artifact!)).toBeUndefined();
        expect(await artifacts.hasBlob(release.artifact!)).toBe(false);
      }
    }
    // Live bytes: the kept releases' distinct blobs and manifests; the disk holds no more than that and slack
    // for the first pack (stable files kept together with the first release's changed ones) and indexes.
    const live = new Map<string, number>();
    for (const env of ["staging", "production"]) {
      for (const release of (await store.releases.history("shop", env, KEEP_RELEASES)).slice(
        0,
        KEEP_RELEASES,
      )) {
        const manifest = await artifacts.manifest(release.artifact!);
        live.set(release.artifact!, JSON.stringify(manifest).length);
        for (const e of manifest.entries) if (e.type === "file") live.set(e.sha256, e.size);
      }
    }
    const liveBytes = [...live.values()].reduce((a, b) => a + b, 0);
    const onDisk = await bytesUnder(storeDir);
    expect(onDisk).toBeGreaterThanOrEqual(liveBytes);
    expect(onDisk).toBeLessThanOrEqual(liveBytes + CHANGED_FILES * CHANGED_BYTES + 64 * 1024);
    // Every upload so far was older than its (zero) grace and deployed nowhere.
    expect((await store.artifacts.list("shop", 500)).filter((a) => a.source === "uploaded")).toEqual([]);
    const chunks = await raw(store)
      .selectFrom("log_chunks")
      .select((eb) => eb.fn.countAll<number>().as("n"))
      .executeTakeFirstOrThrow();
    expect(Number(chunks.n)).toBe(Math.min(n, 2 * KEEP_LOGS));
    const deploys = await store.deploys.list({ app: "shop", limit: 1000 });
    expect(deploys).toHaveLength(n);
    expect(deploys.filter((d) => d.logPrunedAt !== null)).toHaveLength(Math.max(0, n - 2 * KEEP_LOGS));
  }

  it("collects on its own: on its timer, and after a number of finished deploys", async () => {
    const a = await artifactOf(store, artifacts, { "a.txt": "garbage\n" });
    const byTimer = new GarbageCollector({
      store,
      artifacts,
      settings: retention({ gcIntervalMs: 50 }),
    });
    byTimer.start();
    try {
      await until(
        async () => (await store.artifacts.find(a.digest)) === undefined,
        30_000,
        "a timed collection",
      );
    } finally {
      await byTimer.stop();
    }
    expect(await artifacts.hasBlob(a.digest)).toBe(false);

    const b = await artifactOf(store, artifacts, { "b.txt": "garbage too\n" });
    const lines: string[] = [];
    const byCount = new GarbageCollector({
      store,
      artifacts,
      settings: retention({ gcIntervalMs: 0, gcAfterDeploys: 3, releases: 1 }),
      checkEveryMs: 20,
      report: (line) => lines.push(line),
    });
    byCount.start();
    try {
      const keep = await artifactOf(store, artifacts, { "keep.txt": "kept\n" });
      await released(store, keep.digest);
      await released(store, keep.digest);
      // Two deploys: not yet.
      expect(await store.artifacts.find(b.digest)).toBeDefined();
      await released(store, keep.digest);
      await until(
        async () => (await store.artifacts.find(b.digest)) === undefined,
        30_000,
        "a collection after 3 deploys",
      );
      expect(await isComplete(artifacts, keep.digest)).toBe(true);
      await until(() => lines.length > 0, 10_000, "the collection's report line");
      expect(lines[0]).toMatch(/^gc: 1 artifact\(s\), .* removed$/);
    } finally {
      await byCount.stop();
    }
  });
});
