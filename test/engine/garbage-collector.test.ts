import { existsSync, readdirSync, statSync } from "node:fs";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { Readable } from "node:stream";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ArtifactStore } from "../../src/artifacts/artifact-store.js";
import { hostReleaseId } from "../../src/domain/artifact.js";
import { lockEvent } from "../../src/domain/notification-event.js";
import { GarbageCollector } from "../../src/engine/garbage-collector.js";
import type { Store } from "../../src/store/store.js";
import { packTar, tempDir } from "../artifacts/helpers.js";
import { BACKENDS, useTestStore } from "../helpers/databases.js";
import { until } from "../helpers/wait.js";
import { newDeploy } from "../store/fixtures.js";
import {
  artifactOf,
  backdateArtifacts,
  isComplete,
  raw,
  released,
  retention,
  sha,
} from "./retention-fixtures.js";

function latch(): { done: Promise<void>; open(): void } {
  let open!: () => void;
  const done = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { done, open };
}

/**
 * Point 17: what the garbage collector keeps and removes, with the real
 * store (SQLite and PostgreSQL) and a real artifact store on disk.
 */
describe.each(BACKENDS)("garbage collection on %s", (backend) => {
  const current = useTestStore(backend);
  let store: Store;
  let scratch: { dir: string; cleanup(): Promise<void> };
  let artifacts: ArtifactStore;
  let storeDir: string;

  beforeEach(async () => {
    store = current();
    scratch = await tempDir("gc");
    storeDir = path.join(scratch.dir, "artifacts");
    artifacts = new ArtifactStore({ dir: storeDir });
  });
  afterEach(async () => {
    await scratch.cleanup();
  });

  const collector = (overrides: Parameters<typeof retention>[0] = {}) =>
    new GarbageCollector({ store, artifacts, settings: retention(overrides) });

  it("keeps every release retention names, hosts' releases and active deploys' artifacts; removes the rest", async () => {
    const common = { "lib/common.js": "shared by every artifact\n" };
    const make = (name: string, extra: Record<string, string> = {}) =>
      artifactOf(store, artifacts, { ...common, [`${name}.txt`]: `only in ${name}\n`, ...extra });
    // staging: five releases, two kept by count.
    const staging = [];
    for (const n of [1, 2, 3, 4, 5]) {
      const a = await make(`staging-${n}`);
      await released(store, a.digest, { env: "staging" });
      staging.push(a);
    }
    // production: a release to slot blue, then two live ones.
    const blue = await make("blue");
    await released(store, blue.digest, { env: "production", slot: "blue" });
    const prod = [await make("prod-1"), await make("prod-2")];
    for (const a of prod) await released(store, a.digest, { env: "production" });
    // A host still switched from staging-1 (previous), an agent that holds staging-2.
    const { id: hostId } = await store.fleet.ensureSshHost("shop", "web-1", "127.0.0.1", {});
    await store.fleet.setTarget({
      hostId,
      app: "shop",
      env: "staging",
      desiredRelease: hostReleaseId(staging[4]!.digest),
      actualRelease: hostReleaseId(staging[4]!.digest),
      previousRelease: hostReleaseId(staging[0]!.digest),
      deployId: null,
    });
    const agent = await store.hosts.enrollAgent({
      name: "agent-1",
      labels: {},
      owner: "x",
      tokenHash: null,
      grant: null,
    });
    await store.hosts.saveInventory(agent.id, [
      { app: "shop", current: null, slots: {}, releases: [hostReleaseId(staging[1]!.digest)] },
    ]);
    // A running deploy that built an artifact, a queued deploy of an upload.
    const building = await make("building");
    const running = await store.deploys.create(newDeploy({ env: "running" }), () => ({
      ignoredSafeties: [],
    }));
    expect((await store.deploys.claimNext("other-owner", 60_000))?.id).toBe(running.id);
    await store.deploys.recordArtifact(running.id, building.digest);
    const queuedUpload = await make("queued-upload");
    await store.deploys.create(newDeploy({ env: "queued", artifact: queuedUpload.digest }), () => ({
      ignoredSafeties: [],
    }));
    // Garbage: an upload nobody deployed. And one recorded just now, within its grace.
    const stale = await make("stale-upload", { "big.bin": "z".repeat(200_000) });
    const fresh = await make("fresh-upload");
    await backdateArtifacts(store, [fresh.digest]);
    // What points at the stale one: a build key that would reuse it, a host it was sent to.
    await store.artifacts.recordBuild("shop", "k".repeat(64), stale.digest);
    await store.fleet.sendArtifact([agent.id], stale.digest, "shop");

    const kept = [
      staging[0]!,
      staging[1]!,
      staging[3]!,
      staging[4]!,
      blue,
      ...prod,
      queuedUpload,
      building,
      fresh,
    ];
    const removed = [staging[2]!, stale];
    const gc = collector({ releases: 2, artifactGraceMs: 3_600_000 });

    const dry = await gc.run({ dryRun: true });
    expect(dry.dryRun).toBe(true);
    expect(dry.removed.artifacts.count).toBe(2);
    for (const a of [...kept, ...removed]) expect(await isComplete(artifacts, a.digest)).toBe(true);
    expect((await store.artifacts.find(stale.digest))?.digest).toBe(stale.digest);

    const report = await gc.run({ dryRun: false });
    expect(report.removed.artifacts).toEqual(dry.removed.artifacts);
    expect(report.removed.repacked.bytes + report.removed.packs.bytes).toBeGreaterThanOrEqual(200_000);
    for (const a of kept) {
      expect(await isComplete(artifacts, a.digest)).toBe(true);
      expect(await store.artifacts.find(a.digest)).toBeDefined();
    }
    for (const a of removed) {
      expect(await store.artifacts.find(a.digest)).toBeUndefined();
      await expect(artifacts.manifest(a.digest)).rejects.toMatchObject({ code: "E_NOT_FOUND" });
    }
    // Nothing points at a removed artifact any more: no reuse of it, no host may read it.
    expect(await store.artifacts.byBuildKey("shop", "k".repeat(64))).toBeUndefined();
    expect(await store.fleet.wasSent(agent.id, stale.digest)).toBe(false);
    expect(await artifacts.hasBlob(sha("only in staging-3\n"))).toBe(false);
    expect(await artifacts.hasBlob(sha("z".repeat(200_000)))).toBe(false);
    expect(await artifacts.hasBlob(sha("shared by every artifact\n"))).toBe(true);
    expect(report.kept.artifacts).toBe(kept.length);
    expect(report.kept.missing).toEqual([]);

    // Nothing more goes the second time.
    const again = await gc.run({ dryRun: false });
    expect(again.removed.artifacts.count + again.removed.blobs.count + again.removed.packs.count).toBe(0);
  });

  it("removes a dead pack whole, rewrites a mostly dead one, keeps a mostly live one", async () => {
    const live10k = "l".repeat(10_000);
    const dead90k = "d".repeat(90_000);
    const live90k = "L".repeat(90_000);
    const dead10k = "D".repeat(10_000);
    const dead = await artifactOf(store, artifacts, { "x.bin": "x".repeat(50_000) });
    const mostlyDead = await artifactOf(store, artifacts, { "keep.bin": live10k, "drop.bin": dead90k });
    const mostlyLive = await artifactOf(store, artifacts, { "keep.bin": live90k, "drop.bin": dead10k });
    // What stays released names one blob of each of the last two packs (and writes a pack of its own).
    const keeper = await artifactOf(store, artifacts, { a: live10k, b: live90k, own: "own" });
    await released(store, keeper.digest);
    const packsBefore = readdirSync(path.join(storeDir, "packs")).filter((n) => n.endsWith(".pack"));
    expect(packsBefore).toHaveLength(4);

    const report = await collector({ releases: 1 }).run({ dryRun: false });
    expect(report.removed.packs.count).toBe(1);
    expect(report.removed.packs.bytes).toBe(50_000);
    expect(report.removed.repacked.count).toBe(1);
    expect(report.removed.repacked.bytes).toBe(90_000);
    const packsAfter = readdirSync(path.join(storeDir, "packs")).filter((n) => n.endsWith(".pack"));
    expect(packsAfter).toHaveLength(3);
    const sizes = packsAfter.map((n) => statSync(path.join(storeDir, "packs", n)).size).sort((a, b) => a - b);
    // keeper's own pack, the rewritten one (10 KB left), the one kept as it was (100 KB, dead part too).
    expect(sizes).toEqual([3, 10_000, 100_000]);
    expect(await isComplete(artifacts, keeper.digest)).toBe(true);
    expect(await artifacts.hasBlob(sha(dead90k))).toBe(false);
    expect(await artifacts.hasBlob(sha("x".repeat(50_000)))).toBe(false);
    for (const gone of [dead, mostlyDead, mostlyLive])
      expect(await store.artifacts.find(gone.digest)).toBeUndefined();
    // A store opened afresh (a restart) reads the same from the indexes on disk.
    const reopened = new ArtifactStore({ dir: storeDir });
    expect(await isComplete(reopened, keeper.digest)).toBe(true);
    expect(await reopened.hasBlob(sha(dead90k))).toBe(false);
  });

  it("never removes what a build relies on while it is still recording it (the collector waits)", async () => {
    const shared = "content an old artifact and the new build share\n".repeat(100);
    const old = await artifactOf(store, artifacts, { "shared.txt": shared, "old.txt": "old\n" });
    const gc = collector({ releases: 1 });
    const built = latch();
    const recorded = latch();
    const building = artifacts.hold(async () => {
      // The build finds the shared blob stored and writes nothing for it.
      const stored = await artifacts.fromTar(
        Readable.from([
          await packTar([
            { name: "shared.txt", content: shared },
            { name: "new.txt", content: "new\n" },
          ]),
        ]),
      );
      built.open();
      // Its deploy records the artifact only after the collector started.
      await recorded.done;
      await released(store, stored.digest);
      return stored;
    });
    await built.done;
    const collecting = gc.run({ dryRun: false });
    let finished = false;
    void collecting.then(() => {
      finished = true;
    });
    // It reads the references, then waits for the build's section to end (were it not to, it would finish).
    await until(() => artifacts.collectionWaiting || finished, 30_000, "the collector at the store's gate");
    expect(await artifacts.hasBlob(sha(shared))).toBe(true);
    recorded.open();
    const stored = await building;
    const report = await collecting;
    expect(report.removed.artifacts.count).toBe(1);
    expect(await store.artifacts.find(old.digest)).toBeUndefined();
    expect(await artifacts.hasBlob(old.digest)).toBe(false);
    expect(await isComplete(artifacts, stored.digest)).toBe(true);
  });

  it("serves blobs looked up before their pack was rewritten", async () => {
    const keep = "k".repeat(1_000);
    const garbage = await artifactOf(store, artifacts, { "keep.txt": keep, "drop.bin": "g".repeat(20_000) });
    const keeper = await artifactOf(store, artifacts, { "keep.txt": keep });
    await released(store, keeper.digest);
    const lookedUp = artifacts.concatenated([sha(keep), sha(keep)]);
    const opened = await artifacts.openBlob(sha(keep));
    const report = await collector({ releases: 1 }).run({ dryRun: false });
    expect(report.removed.repacked.count).toBe(1);
    expect(await store.artifacts.find(garbage.digest)).toBeUndefined();
    const chunks: Buffer[] = [];
    await lookedUp.writeTo({
      write(chunk, callback) {
        chunks.push(Buffer.from(chunk));
        callback();
      },
    });
    expect(Buffer.concat(chunks).toString()).toBe(keep + keep);
    const streamed: Buffer[] = [];
    for await (const chunk of opened) streamed.push(chunk as Buffer);
    expect(Buffer.concat(streamed).toString()).toBe(keep);
  });

  it("keeps the logs of each environment's newest deploys and young ones; removes the rest, keeping the deploys", async () => {
    const ids: number[] = [];
    const a = await artifactOf(store, artifacts, { f: "f" });
    for (let i = 1; i <= 8; i++)
      ids.push((await released(store, a.digest, { log: `log of deploy ${i}\n` })).deployId);
    const other = (await released(store, a.digest, { env: "production", log: "production's only log\n" }))
      .deployId;
    // Deploys 1-6 and production's finished long ago; 7 and 8 are recent.
    await raw(store)
      .updateTable("deploys")
      .set({ finished_at: "2000-01-01T00:00:00.000Z" })
      .where("id", "in", [...ids.slice(0, 6), other])
      .execute();
    // An old deploy still running is never touched.
    const active = await store.deploys.create(newDeploy({ env: "qa" }), () => ({ ignoredSafeties: [] }));
    await store.deploys.claimNext("w", 60_000);
    await store.logs.append(active.id, { seq: 0, offset: 0, text: "still running\n" });
    await raw(store)
      .updateTable("deploys")
      .set({ created_at: "2000-01-01T00:00:00.000Z" })
      .where("id", "=", active.id)
      .execute();

    const gc = collector({ logs: 3, logAgeMs: 86_400_000 });
    const dry = await gc.run({ dryRun: true });
    // staging: not among the newest three (6, 7, 8) and old: 1-5. production's only deploy is its newest.
    expect(dry.removed.logs).toEqual({ count: 5, bytes: 5 * "log of deploy 1\n".length });
    expect((await store.logs.read(ids[0]!, 0)).chunks).toHaveLength(1);

    const report = await gc.run({ dryRun: false });
    expect(report.removed.logs).toEqual(dry.removed.logs);
    for (const [i, id] of ids.entries()) {
      const deploy = await store.deploys.get(id);
      expect(deploy.status).toBe("succeeded");
      const chunks = (await store.logs.read(id, 0)).chunks;
      if (i < 5) {
        expect(deploy.logPrunedAt).not.toBeNull();
        expect(chunks).toEqual([]);
      } else {
        expect(deploy.logPrunedAt).toBeNull();
        expect(chunks.map((c) => c.text)).toEqual([`log of deploy ${i + 1}\n`]);
      }
    }
    expect((await store.logs.read(other, 0)).chunks).toHaveLength(1);
    expect((await store.logs.read(active.id, 0)).chunks).toHaveLength(1);
    expect((await gc.run({ dryRun: false })).removed.logs.count).toBe(0);
  });

  it("removes settled notification deliveries older than the log age; keeps pending and young ones", async () => {
    const event = (reason: string) =>
      lockEvent(
        { app: "shop", env: "staging", lockedBy: "ann", reason, createdAt: new Date().toISOString() },
        "lock.locked",
        "ann",
        new Date().toISOString(),
      );
    for (const reason of ["old delivered", "old failed", "young delivered", "old pending"])
      await store.notify.record(event(reason));
    await store.notify.fanOut(100, () => ["hook"]);
    const byReason = new Map(
      (await store.notify.list({ app: "shop", limit: 10 })).map((d) => [d.event.lock?.reason, d.id]),
    );
    const set = (reason: string, status: string, updatedAt: string) =>
      raw(store)
        .updateTable("notify_deliveries")
        .set({ status, updated_at: updatedAt })
        .where("id", "=", byReason.get(reason)!)
        .execute();
    await set("old delivered", "delivered", "2000-01-01T00:00:00.000Z");
    await set("old failed", "failed", "2000-01-01T00:00:00.000Z");
    await set("young delivered", "delivered", new Date().toISOString());
    await set("old pending", "pending", "2000-01-01T00:00:00.000Z");

    await collector({ logAgeMs: 86_400_000 }).run({ dryRun: false });
    const left = (await store.notify.list({ app: "shop", limit: 10 }))
      .map((d) => d.event.lock?.reason)
      .sort();
    expect(left).toEqual(["old pending", "young delivered"]);
  });

  it("keeps an artifact stored again within its grace: its grace starts over", async () => {
    const again = await artifactOf(store, artifacts, { "again.txt": "again\n" });
    await backdateArtifacts(store);
    // Uploaded again: the same tree, the same digest, its grace starts over.
    await artifactOf(store, artifacts, { "again.txt": "again\n" }, { source: "uploaded" });
    const report = await collector({ artifactGraceMs: 3_600_000 }).run({ dryRun: false });
    expect(report.removed.artifacts.count).toBe(0);
    expect(await isComplete(artifacts, again.digest)).toBe(true);
  });

  it("forgets git blob ids whose blobs it removed, so the next tree read from git reads them again", async () => {
    const { makeRepo, fixtureGitEnv } = await import("../helpers/git-fixtures.js");
    const { gitTreeReader } = await import("../../src/git/tree-reader.js");
    const { SecretMasker } = await import("../../src/domain/secrets.js");
    const repo = await makeRepo(path.join(scratch.dir, "repo"));
    await repo.commit({ "a.txt": "alpha\n", "b.txt": "beta\n" });
    const reader = () =>
      gitTreeReader({
        gitDir: path.join(repo.path, ".git"),
        sha: repo.head,
        env: fixtureGitEnv(),
        masker: new SecretMasker([]),
        timeoutMs: 30_000,
      });
    const first = (await artifacts.fromGitTree(reader(), null))!;
    await store.artifacts.record({
      digest: first.digest,
      app: "shop",
      fingerprint: "f",
      files: 2,
      bytes: 11,
      source: "built",
    });
    const memo = path.join(storeDir, "git-blob-digests");
    expect((await readFile(memo, "utf8")).trim().split("\n")).toHaveLength(2);

    const report = await collector().run({ dryRun: false });
    expect(report.removed.artifacts.count).toBe(1);
    expect(await artifacts.hasBlob(sha("alpha\n"))).toBe(false);
    expect((await readFile(memo, "utf8")).trim()).toBe("");

    const second = (await artifacts.fromGitTree(reader(), null))!;
    expect(second.digest).toBe(first.digest);
    expect(await isComplete(artifacts, second.digest)).toBe(true);
    expect(existsSync(memo)).toBe(true);
    expect((await readFile(memo, "utf8")).trim().split("\n")).toHaveLength(2);
  });
});
