import { rmSync } from "node:fs";
import { readdir, rename } from "node:fs/promises";
import { join, resolve } from "node:path";
import { TurnoutError } from "../../domain/errors.js";
import {
  type AppTarget,
  appTarget,
  type HealthCheckConfig,
  type HostAppInventory,
} from "../../domain/fleet.js";
import type {
  BlobSource,
  HostLog,
  HostOps,
  PrefetchBlob,
  PrefetchResult,
  StageResult,
  StageSpec,
} from "../../providers/fleet/host-ops.js";
import { BlobCache, cachedFileMode } from "./blob-cache.js";
import { type BlobToFetch, fetchBlobs } from "./blob-fetch.js";
import { BlobPrefetcher } from "./blob-prefetch.js";
import { assertArgv, assertEnv, assertTimeout, checkHealth, runCommand } from "./commands.js";
import { claimPlace } from "./deploy-paths.js";
import {
  atomicSymlink,
  ensureRealDir,
  fsyncPath,
  isRealDir,
  KeyedMutex,
  nonce,
  removeTree,
} from "./fs-util.js";
import { readAppInventory, readInventory, releasesInOrder } from "./inventory.js";
import {
  AppLayout,
  assertReleaseId,
  CURRENT,
  type Pointer,
  pointerTarget,
  REMOVING_PREFIX,
  readPointer,
  STAGING_PREFIX,
} from "./layout.js";
import { createDirectories, materialize, syncTree } from "./materialize.js";
import { releaseProblems } from "./release-check.js";
import { appendOrder, readOrder, writeOrder } from "./release-order.js";
import { type FileEntry, planRelease } from "./release-plan.js";
import { createShared, missingShared } from "./shared-paths.js";

/**
 * HostOps on the local filesystem: what an agent does when the server asks,
 * and what tests and benchmarks drive directly with a temp root.
 *
 * Concurrency: operations on one layout's pointers, order file and release
 * directories are serialized per layout (its directory) within this process (a prune cannot
 * remove a release a switch is about to point at). Staging runs outside that
 * lock, in a private `.staging-*` directory, and only takes it to publish.
 * One process owns a root; two agents on the same root are not supported.
 */
export interface LocalHostOptions {
  name: string;
  /** The agent root (default layout `/srv/turnout`). */
  root: string;
  /** The blob cache (default `<root>/.turnout/blobs`). Off the root's filesystem, releases get copies, not links. */
  cacheDir?: string;
  /** fsync blobs, staged trees and pointers before they become visible (default true; tests may turn it off). */
  fsyncs?: boolean;
  /** Variables every command sees before the deploy's own (default: PATH, HOME, LANG, … of this process). */
  baseEnv?: Record<string, string>;
  /** SIGTERM → SIGKILL grace for commands (default 5 s). */
  killGraceMs?: number;
  /** Remove cache blobs no release links any more after each prune (default true). */
  collectBlobs?: boolean;
}

/** The lock key of <root>/.turnout/paths (layout keys are absolute directories: this never is one). */
const PATHS_LOCK = "deploy-paths";

const PASSED_ENV = ["PATH", "HOME", "LANG", "LC_ALL", "TZ", "USER", "LOGNAME", "SHELL", "TMPDIR"];

export class LocalHostOps implements HostOps {
  readonly name: string;
  readonly root: string;
  readonly cache: BlobCache;
  private readonly fsyncs: boolean;
  private readonly baseEnv: Record<string, string>;
  private readonly killGraceMs: number;
  private readonly collectBlobs: boolean;
  private readonly locks = new KeyedMutex();
  /** Staging directories in progress here: the stale-staging sweep leaves them alone. */
  private readonly staging = new Set<string>();
  /** Stagings using the cache; blob GC waits for none (a fresh blob has no links yet). */
  private cacheUsers = 0;
  private gc: Promise<unknown> | null = null;
  private copiedFiles = false;
  private readonly prefetcher: BlobPrefetcher;

  constructor(options: LocalHostOptions) {
    this.name = options.name;
    this.root = resolve(options.root);
    this.cache = new BlobCache(
      resolve(options.cacheDir ?? join(this.root, ".turnout", "blobs")),
      options.fsyncs ?? true,
    );
    this.fsyncs = options.fsyncs ?? true;
    this.baseEnv =
      options.baseEnv ??
      Object.fromEntries(
        PASSED_ENV.flatMap((k) => (process.env[k] === undefined ? [] : [[k, process.env[k]!]])),
      );
    this.killGraceMs = options.killGraceMs ?? 5000;
    this.collectBlobs = options.collectBlobs ?? true;
    this.prefetcher = new BlobPrefetcher(this.cache);
  }

  /**
   * Blobs of a release still being built, into the cache (see
   * blob-prefetch.ts). Counts as a user of the cache: a fresh blob has no
   * link from a release yet, and the blob collector would take it.
   */
  async prefetch(
    _app: string,
    _grant: string,
    blobs: PrefetchBlob[],
    source: BlobSource,
    signal: AbortSignal,
  ): Promise<PrefetchResult> {
    this.cacheUsers++;
    try {
      // Registered with the prefetcher before any await: a stage call right behind it waits for it.
      return await this.prefetcher.run(blobs, source, signal, this.gc ?? undefined);
    } finally {
      this.cacheUsers--;
    }
  }

  async stage(spec: StageSpec, blobs: BlobSource, log: HostLog, signal: AbortSignal): Promise<StageResult> {
    // Everything is checked before the first write.
    const layout = new AppLayout(this.root, appTarget(spec.app, spec.path));
    const id = assertReleaseId(spec.releaseId);
    const plan = planRelease(spec.manifest, spec.shared ?? []);
    const beforeSwitch =
      spec.beforeSwitch === undefined ? undefined : assertArgv(spec.beforeSwitch, "before_switch");
    const env = assertEnv(spec.env);
    const timeoutMs = assertTimeout(spec.timeoutMs, "timeout");
    signal.throwIfAborted();

    await this.ensureAppDirs(layout);
    const final = layout.release(id);
    // A release already here is checked, not trusted: a damaged one (files
    // deleted or changed by hand, disk trouble) is staged again and replaces it.
    let damaged = false;
    if (await isRealDir(final)) {
      const problems = releaseProblems(final, plan, this.cache);
      this.logRepairs(log);
      if (problems.length === 0) {
        await this.locks.run(layout.dir, () => this.recordOrder(layout, id));
        log(`release ${id} is already staged`);
        return { staged: false, blobsFetched: 0, bytesFetched: 0 };
      }
      damaged = true;
      log(`release ${id} is damaged on this host (${problems.join("; ")}): staging it again`);
    }

    const staging = join(layout.releases, `${STAGING_PREFIX}${id}-${nonce()}`);
    /** Seeds downloaded beside the cache: removed once adopted, or on failure. */
    const temps: string[] = [];
    this.staging.add(staging);
    this.cacheUsers++;
    try {
      if (this.gc) await this.gc.catch(() => undefined);
      await this.locks.run(layout.dir, () => this.sweep(layout));
      await ensureRealDir(this.cache.dir);
      // Prefetches in flight are fetching blobs of this release: wait for them rather than fetch twice.
      if (await this.prefetcher.settled()) log(`staging ${id}: waited for the prefetch in flight`);

      // 1. Blobs this host lacks, each downloaded once, verified, and written
      //    where it will live: at its first path in the release, or (a shared
      //    file's seed that no path holds) beside the cache.
      const missingSharedPaths = await missingShared(layout.shared, plan);
      const needed = new Map<string, { file: FileEntry; inTree: boolean }>();
      for (const file of plan.files)
        if (!needed.has(file.sha256)) needed.set(file.sha256, { file, inTree: true });
      for (const { seed } of missingSharedPaths)
        if (seed && !needed.has(seed.sha256)) needed.set(seed.sha256, { file: seed, inTree: false });
      const toFetch: BlobToFetch[] = [];
      const written = new Set<string>();
      for (const [sha256, { file, inTree }] of needed) {
        if (this.cache.has(sha256, file.size)) continue;
        const mode = inTree ? cachedFileMode(file.mode) : 0o444;
        const dest = inTree ? join(staging, file.path) : this.cache.tempFile(sha256);
        toFetch.push({ sha256, size: file.size, dest, mode });
        if (inTree) written.add(file.path);
        else temps.push(dest);
      }
      this.logRepairs(log);
      const total = toFetch.reduce((sum, f) => sum + f.size, 0);
      log(
        `staging ${id}: ${plan.files.length} files, fetching ${toFetch.length} of ${needed.size} blobs (${total} bytes)`,
      );
      createDirectories(plan, staging);
      if (temps.length > 0) await ensureRealDir(this.cache.tmpDir);
      const bytesFetched = await fetchBlobs(toFetch, blobs, signal);
      // Verified: named in the cache (hard links), once their data is durable.
      const adopted = await this.cache.adopt(
        toFetch.map((f) => ({ sha256: f.sha256, size: f.size, file: f.dest, mode: f.mode })),
        signal,
      );
      // Copies share no inode with a release: link counts no longer say what is in use (see collectGarbage).
      if (adopted.copies > 0) this.copiedFiles = true;
      for (const temp of temps.splice(0)) rmSync(temp, { force: true });

      // 2. The rest of the tree, privately, under its staging name.
      const { copied } = await materialize(plan, staging, this.cache, written, signal);
      if (copied > 0) {
        this.copiedFiles = true;
        log(`staging ${id}: ${copied} files copied (the cache cannot be hard-linked from the release)`);
      }
      if (plan.dropped > 0) log(`staging ${id}: ${plan.dropped} entries replaced by links to shared/`);
      await createShared(layout.shared, missingSharedPaths, this.cache, log);

      // 3. before_switch, in the staged tree: non-zero means no release.
      if (beforeSwitch) {
        log(`before_switch: ${JSON.stringify(beforeSwitch)}`);
        const code = await runCommand(beforeSwitch, {
          cwd: staging,
          env: this.commandEnv(layout, id, env, staging, { TURNOUT_RELEASE_FINAL_DIR: final }),
          timeoutMs,
          killGraceMs: this.killGraceMs,
          log,
          signal,
          label: "before_switch",
        });
        signal.throwIfAborted();
        if (code !== 0) {
          throw new TurnoutError("E_VALIDATION", `before_switch failed with exit code ${code}`, {
            exitCode: code,
          });
        }
      }

      // 4. Durable, then visible under its final name in one rename.
      if (this.fsyncs) await syncTree(staging, plan, beforeSwitch !== undefined, signal);
      signal.throwIfAborted();
      let replaced: string | undefined;
      const published = await this.locks.run(layout.dir, async () => {
        if (await isRealDir(final)) {
          if (!damaged) return false; // a concurrent staging of the same release won
          // Out of its name first, then the new one in: a pointer at it dangles for
          // the moment between the two renames, never names a half-written tree.
          replaced = join(layout.releases, `${REMOVING_PREFIX}${id}-${nonce()}`);
          await rename(final, replaced);
        }
        await rename(staging, final);
        if (this.fsyncs) await fsyncPath(layout.releases);
        await this.recordOrder(layout, id);
        return true;
      });
      if (replaced) await removeTree(replaced);
      if (!published) {
        await removeTree(staging);
        return { staged: false, blobsFetched: toFetch.length, bytesFetched };
      }
      log(damaged ? `staged ${id} again: repaired` : `staged ${id}`);
      return {
        staged: true,
        blobsFetched: toFetch.length,
        bytesFetched,
        ...(damaged ? { repaired: true } : {}),
      };
    } catch (error) {
      await removeTree(staging);
      for (const temp of temps) rmSync(temp, { force: true });
      throw error;
    } finally {
      this.staging.delete(staging);
      this.cacheUsers--;
    }
  }

  async switchTo(app: AppTarget, releaseId: string, slot: string): Promise<{ previous: string | null }> {
    const layout = new AppLayout(this.root, app);
    const id = assertReleaseId(releaseId);
    const pointer = layout.pointer(slot);
    return this.locks.run(layout.dir, async () => ({ previous: await this.point(layout, pointer, id) }));
  }

  async promoteSlot(app: AppTarget, slot: string): Promise<{ previous: string | null; current: string }> {
    const layout = new AppLayout(this.root, app);
    const from = layout.pointer(slot);
    if (from.kind === "current") throw new TurnoutError("E_VALIDATION", "promote a slot, not current itself");
    return this.locks.run(layout.dir, async () => {
      const id = await readPointer(from);
      if (id === null)
        throw new TurnoutError("E_NOT_FOUND", `slot ${from.name} of ${layout.app} points at no release`);
      const previous = await this.point(layout, layout.pointer(CURRENT), id);
      return { previous, current: id };
    });
  }

  async run(
    app: AppTarget,
    argv: string[],
    env: Record<string, string>,
    timeoutMs: number,
    log: HostLog,
    signal: AbortSignal,
  ): Promise<number> {
    const layout = new AppLayout(this.root, app);
    const command = assertArgv(argv, "command");
    const vars = assertEnv(env);
    const timeout = assertTimeout(timeoutMs, "timeout");
    const { id, dir } = await this.currentRelease(layout);
    if (dir === null) {
      // depool/pool may run before the app's first release: give them the app directory.
      await ensureRealDir(this.root);
      await ensureRealDir(layout.dir);
      log(`${layout.app} has no current release yet: running in ${layout.dir}`);
    }
    return runCommand(command, {
      cwd: dir ?? layout.dir,
      env: this.commandEnv(layout, id, vars, dir ?? ""),
      timeoutMs: timeout,
      killGraceMs: this.killGraceMs,
      log,
      signal,
      label: command[0]!,
    });
  }

  async health(
    app: AppTarget,
    check: HealthCheckConfig,
    log: HostLog,
    signal: AbortSignal,
  ): Promise<boolean> {
    const layout = new AppLayout(this.root, app);
    const { id, dir } = await this.currentRelease(layout);
    return checkHealth(check, {
      cwd: dir,
      env: this.commandEnv(layout, id, {}, dir ?? ""),
      killGraceMs: this.killGraceMs,
      log,
      signal,
    });
  }

  async prune(app: AppTarget, keep: number): Promise<{ removed: string[] }> {
    const layout = new AppLayout(this.root, app);
    if (!Number.isInteger(keep) || keep < 0) {
      throw new TurnoutError("E_VALIDATION", `keep must be a whole number of releases, got ${keep}`);
    }
    const removed = await this.locks.run(layout.dir, async () => {
      if (!(await isRealDir(layout.releases))) return [];
      await this.sweep(layout);
      const ordered = await releasesInOrder(layout);
      const inventory = await readAppInventory(layout);
      const pinned = new Set(
        [inventory.current, ...Object.values(inventory.slots)].filter((x) => x !== null),
      );
      const kept = new Set(ordered.slice(Math.max(0, ordered.length - keep)));
      const doomed = ordered.filter((id) => !kept.has(id) && !pinned.has(id));
      for (const id of doomed) {
        // Out of its name first (atomic), so no one ever sees a half-removed release.
        const trash = join(layout.releases, `${REMOVING_PREFIX}${id}-${nonce()}`);
        await rename(layout.release(id), trash);
        await removeTree(trash);
      }
      const gone = new Set(doomed);
      await writeOrder(
        layout.orderFile,
        ordered.filter((id) => !gone.has(id)),
        this.fsyncs,
      );
      return doomed;
    });
    if (removed.length > 0) await this.collectGarbage();
    return { removed };
  }

  inventory(): Promise<HostAppInventory[]> {
    return readInventory(this.root);
  }

  /** Drops cache blobs no release links, unless a staging is using the cache right now (then: next time). */
  async collectGarbage(): Promise<{ removed: number; bytes: number } | null> {
    // With copies instead of links, a link count says nothing about use.
    if (!this.collectBlobs || this.copiedFiles || this.cacheUsers > 0 || this.gc) return null;
    const run = this.cache.collectGarbage();
    this.gc = run;
    try {
      return await run;
    } finally {
      this.gc = null;
    }
  }

  // --- internals ---

  /** Damaged cache blobs found (and removed, to be fetched again) are said in the deploy's log. */
  private logRepairs(log: HostLog): void {
    const repairs = this.cache.takeRepairs();
    if (repairs.length === 0) return;
    const shown = repairs.slice(0, 5).join(", ");
    log(
      `blob cache: ${repairs.length} damaged blob(s) removed, fetched again: ${shown}${repairs.length > 5 ? ", …" : ""}`,
    );
  }

  private async point(layout: AppLayout, pointer: Pointer, id: string): Promise<string | null> {
    if (!(await isRealDir(layout.release(id)))) {
      throw new TurnoutError("E_NOT_FOUND", `release ${id} of ${layout.app} is not staged on ${this.name}`, {
        app: layout.app,
        releaseId: id,
      });
    }
    if (pointer.kind === "slot") await ensureRealDir(layout.slots);
    const previous = await readPointer(pointer);
    await atomicSymlink(pointerTarget(pointer.kind, id), pointer.path, this.fsyncs);
    return previous;
  }

  /** The release `current` names, if it exists as a complete release. */
  private async currentRelease(layout: AppLayout): Promise<{ id: string | null; dir: string | null }> {
    const id = await readPointer(layout.pointer(CURRENT));
    if (id !== null && (await isRealDir(layout.release(id)))) return { id, dir: layout.release(id) };
    return { id: null, dir: null };
  }

  private commandEnv(
    layout: AppLayout,
    id: string | null,
    env: Record<string, string>,
    releaseDir: string,
    extra: Record<string, string> = {},
  ): Record<string, string> {
    return {
      ...this.baseEnv,
      ...env,
      TURNOUT_APP: layout.app,
      TURNOUT_RELEASE_ID: id ?? "",
      TURNOUT_RELEASE_DIR: releaseDir,
      TURNOUT_SHARED_DIR: layout.shared,
      ...extra,
    };
  }

  private async ensureAppDirs(layout: AppLayout): Promise<void> {
    await ensureRealDir(this.root);
    // Checked and recorded before the first write there.
    await this.locks.run(PATHS_LOCK, () =>
      claimPlace(this.root, layout.app, layout.dir, layout.path, this.fsyncs),
    );
    await ensureRealDir(layout.dir);
    await ensureRealDir(layout.releases);
    await ensureRealDir(layout.shared);
  }

  private async recordOrder(layout: AppLayout, id: string): Promise<void> {
    const order = await readOrder(layout.orderFile);
    if (!order.includes(id)) await appendOrder(layout.orderFile, id, this.fsyncs);
  }

  /**
   * Leftovers of a crash: staging and removal directories nobody here is
   * working on, and temp pointers. Called with the app's lock held.
   */
  private async sweep(layout: AppLayout): Promise<void> {
    for (const name of await readdir(layout.releases).catch(() => [] as string[])) {
      const path = join(layout.releases, name);
      if ((name.startsWith(STAGING_PREFIX) || name.startsWith(REMOVING_PREFIX)) && !this.staging.has(path)) {
        await removeTree(path);
      }
    }
    for (const dir of [layout.dir, layout.slots]) {
      for (const name of await readdir(dir).catch(() => [] as string[])) {
        if (name.startsWith(".") && name.includes(".tmp-"))
          await removeTree(join(dir, name)).catch(() => undefined);
      }
    }
  }
}
