import type { DiskInventory, SweepPlan, SweepResult } from "../artifacts/artifact-collector.js";
import type { ArtifactStore } from "../artifacts/artifact-store.js";
import {
  emptyAmount,
  type GcAmount,
  type GcReport,
  type RetentionSettings,
  releasesToKeep,
} from "../domain/retention.js";
import type { ArtifactReferences } from "../store/retention.js";
import type { Store } from "../store/store.js";
import { collectShared } from "./shared-collection.js";

/** What the API and the CLI may ask of the collector. */
export interface GarbageCollectorApi {
  run(options: { dryRun: boolean }): Promise<GcReport>;
}

export interface GarbageCollectorOptions {
  store: Store;
  artifacts: ArtifactStore;
  settings: RetentionSettings;
  /** One line per collection that removed something, and errors of the periodic ones. */
  report?: (line: string) => void;
  /** The clock (tests move it). */
  now?: () => number;
  /** How often the timer looks whether a collection is due (default: a minute, or the interval if shorter). */
  checkEveryMs?: number;
}

/** The periodic check's pace: a collection due after N deploys waits at most this long. */
const CHECK_EVERY_MS = 60_000;
/** Kept artifacts whose manifest is not in this store, listed in a report at most. */
const MISSING_LISTED = 20;

/**
 * Garbage collection of the artifact store and of deploy logs, by the rules
 * of domain/retention.ts. One collection at a time per process.
 *
 * Safe while deploys run: the disk is listed and the references read first
 * (the slow part, nothing held); then, inside the artifact store's exclusive
 * section, the references are read again and whatever they add is kept too,
 * and only then are records and files removed. Anything that starts relying
 * on stored blobs does so inside the store's shared section until the
 * database records it (ArtifactStore.hold), so it is either in the second
 * reading or starts after the removal and finds the blobs gone (and writes
 * them again, or says the artifact was removed). Files newer than the blob
 * grace are never removed, whatever the references say.
 */
export class GarbageCollector implements GarbageCollectorApi {
  private running: Promise<GcReport> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private lastRun: number;
  private checking = false;
  private stopped = false;
  private readonly now: () => number;

  constructor(private readonly options: GarbageCollectorOptions) {
    this.now = options.now ?? Date.now;
    this.lastRun = this.now();
  }

  /** Collects every `gcIntervalMs`, and once `gcAfterDeploys` deploys finished since the last collection. */
  start(): void {
    const { gcIntervalMs, gcAfterDeploys } = this.options.settings;
    if (gcIntervalMs <= 0 && gcAfterDeploys <= 0) return;
    const every =
      this.options.checkEveryMs ??
      (gcIntervalMs > 0 ? Math.min(gcIntervalMs, CHECK_EVERY_MS) : CHECK_EVERY_MS);
    this.timer = setInterval(() => void this.checkDue(), every);
    this.timer.unref();
  }

  /** Stops the timer and waits for a collection in progress; a due check under way starts none. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    this.timer = undefined;
    await this.running?.catch(() => undefined);
  }

  /** One collection (after the one in progress, if any). */
  run(options: { dryRun: boolean }): Promise<GcReport> {
    const previous = this.running?.catch(() => undefined) ?? Promise.resolve();
    const next = previous.then(() => this.collect(options.dryRun));
    this.running = next;
    void next
      .finally(() => {
        if (this.running === next) this.running = undefined;
      })
      .catch(() => undefined);
    return next;
  }

  private async checkDue(): Promise<void> {
    if (this.checking || this.running) return;
    this.checking = true;
    try {
      const { gcIntervalMs, gcAfterDeploys } = this.options.settings;
      const now = this.now();
      const due =
        (gcIntervalMs > 0 && now - this.lastRun >= gcIntervalMs) ||
        (gcAfterDeploys > 0 &&
          (await this.options.store.retention.finishedSince(new Date(this.lastRun).toISOString())) >=
            gcAfterDeploys);
      if (!due || this.stopped) return;
      const report = await this.run({ dryRun: false });
      if (somethingRemoved(report)) this.options.report?.(`gc: ${summary(report)}`);
    } catch (error) {
      this.options.report?.(`gc: failed: ${(error as Error).message}`);
    } finally {
      this.checking = false;
    }
  }

  private async collect(dryRun: boolean): Promise<GcReport> {
    const { store, artifacts, settings } = this.options;
    const startedAt = this.now();
    const youngSince = new Date(startedAt - settings.artifactGraceMs).toISOString();
    const report = newReport(dryRun, startedAt);

    // 1. Nothing held: list the disk, mark what the references name now.
    const collector = artifacts.collector;
    const inventory = await collector.inventory();
    const live = new Set<string>();
    await collector.markLive(...(await this.references(youngSince)), inventory, live);

    // 2. Alone with the store: read the references again, then remove.
    const removeNow = async () => {
      const missing = await collector.markLive(...(await this.references(youngSince)), inventory, live);
      const plan = collector.plan(inventory, live, { now: startedAt, graceMs: settings.blobGraceMs });
      const doomed = await this.doomedRecords(plan, inventory, youngSince);
      let swept: SweepResult;
      if (dryRun) swept = planned(plan);
      else {
        // Records first: no one finds an artifact whose files are going.
        await store.retention.deleteArtifacts(doomed.digests);
        swept = await collector.sweep(plan);
      }
      return { missing, plan, doomed, swept };
    };
    const { missing, plan, doomed, swept } = dryRun
      ? await removeNow()
      : await artifacts.collect(() => removeNow());
    report.removed.artifacts = doomed.amount;
    report.removed.blobs = swept.blobs;
    report.removed.packs = swept.packs;
    report.removed.repacked = swept.repacked;
    report.removed.temp = swept.temp;
    report.kept.bytes = plan.keptBytes;
    report.kept.missing = missing.slice(0, MISSING_LISTED);

    // 2b. Several servers: the shared store, by one server at a time (this one's cache was above).
    if (artifacts.cache) {
      const shared = await collectShared({
        store,
        cache: artifacts.cache,
        references: () => this.references(youngSince),
        untouchedSince: new Date(startedAt - settings.blobGraceMs).toISOString(),
        youngSince,
        dryRun,
      });
      report.removed.shared = shared.blobs;
      report.removed.artifacts = shared.artifacts;
      report.kept.missing = shared.missing.slice(0, MISSING_LISTED);
      report.kept.sharedBytes = shared.keptBytes;
      if (shared.skipped) report.kept.sharedSkipped = true;
      if (dryRun) doomed.digests.push(...shared.records);
    }

    // 3. Logs: the database alone.
    const logsBefore = new Date(startedAt - settings.logAgeMs).toISOString();
    const pruned = await store.retention.logsToPrune(settings.logs, logsBefore);
    report.removed.logs = await store.retention.logSize(pruned);
    if (!dryRun) await store.retention.pruneLogs(pruned);
    // Notification deliveries that are settled (delivered or given up on) go with the same age as logs.
    if (!dryRun) await store.notify.prune(logsBefore);

    report.kept.artifacts = (await store.retention.countArtifacts()) - (dryRun ? doomed.digests.length : 0);
    report.finishedAt = new Date(this.now()).toISOString();
    if (!dryRun) this.lastRun = startedAt;
    return report;
  }

  /** The references, as markLive takes them: digests, then hosts' release ids. */
  private async references(youngSince: string): Promise<[Set<string>, Set<string>]> {
    const { store, settings } = this.options;
    const refs: ArtifactReferences = await store.retention.otherReferences(youngSince);
    for (const digest of releasesToKeep(await store.retention.releasesWithArtifacts(), settings.releases))
      refs.digests.add(digest);
    return [refs.digests, refs.hostReleases];
  }

  /**
   * Artifact records that go: recorded before the grace, named by nothing,
   * and whose manifest this store holds and removes (a record of an artifact
   * another server holds is that server's to remove).
   */
  private async doomedRecords(
    plan: SweepPlan,
    inventory: DiskInventory,
    youngSince: string,
  ): Promise<{ digests: string[]; amount: GcAmount }> {
    // With a shared store, records go with the shared copy of their manifest, not with a cache's.
    if (this.options.artifacts.cache) return { digests: [], amount: emptyAmount() };
    const going = new Set(plan.loose.map((b) => b.sha256));
    const digests = (await this.options.store.retention.artifactsRecordedBefore(youngSince)).filter((d) =>
      going.has(d),
    );
    const amount = emptyAmount();
    for (const digest of digests) {
      amount.count++;
      amount.bytes += inventory.loose.get(digest)?.size ?? 0;
    }
    return { digests, amount };
  }
}

function newReport(dryRun: boolean, startedAt: number): GcReport {
  return {
    dryRun,
    startedAt: new Date(startedAt).toISOString(),
    finishedAt: new Date(startedAt).toISOString(),
    removed: {
      artifacts: emptyAmount(),
      blobs: emptyAmount(),
      packs: emptyAmount(),
      repacked: emptyAmount(),
      temp: emptyAmount(),
      logs: emptyAmount(),
    },
    kept: { artifacts: 0, bytes: 0, missing: [] },
  };
}

/** What a plan would remove, without removing it. */
function planned(plan: SweepPlan): SweepResult {
  const sum = (items: { size?: number; bytes?: number }[]) => ({
    count: items.length,
    bytes: items.reduce((total, i) => total + (i.size ?? i.bytes ?? 0), 0),
  });
  return {
    blobs: sum(plan.loose),
    packs: sum(plan.packs),
    repacked: { count: plan.rewrites.length, bytes: plan.rewrites.reduce((t, r) => t + r.freed, 0) },
    temp: sum(plan.temps),
  };
}

function somethingRemoved(report: GcReport): boolean {
  return Object.values(report.removed).some((amount) => amount.count > 0);
}

/** `12 artifacts, 340 blobs (5.1 MB), 1 pack (40.0 MB), 200 logs (3.2 MB) removed`. */
export function summary(report: GcReport): string {
  const { removed } = report;
  const parts = [
    `${removed.artifacts.count} artifact(s)`,
    `${removed.blobs.count} blob(s) (${megabytes(removed.blobs.bytes)})`,
    `${removed.packs.count} pack(s) (${megabytes(removed.packs.bytes)})`,
    `${removed.repacked.count} pack(s) rewritten (${megabytes(removed.repacked.bytes)} freed)`,
    `${removed.logs.count} log(s) (${megabytes(removed.logs.bytes)})`,
  ];
  return `${parts.join(", ")} ${report.dryRun ? "would be removed" : "removed"}`;
}

function megabytes(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}
