import type { Kysely } from "kysely";
import { hostReleaseId } from "../domain/artifact.js";
import type { GcAmount, ReleaseRef } from "../domain/retention.js";
import { fromJson, nowIso } from "./rows.js";
import type { Schema } from "./schema.js";

/** Everything the database says may still be needed of the artifact store. */
export interface ArtifactReferences {
  /** Artifact digests: releases, active deploys, young records. */
  digests: Set<string>;
  /** Host release ids (first 16 hex of a digest): what hosts run, ran, hold or should run. */
  hostReleases: Set<string>;
}

/** Deploys at a time whose logs are removed in one transaction. */
const PRUNE_BATCH = 200;
const NOT_ACTIVE = ["succeeded", "failed", "cancelled"] as const;

/**
 * The database side of retention: which artifacts are referenced (see
 * domain/retention.ts for the rules), removing artifact records, and
 * removing old deploys' logs (the deploy stays, marked `log_pruned_at`).
 */
export class RetentionStore {
  constructor(private readonly db: Kysely<Schema>) {}

  /** Every release that installed an artifact, with its environment and slot. */
  async releasesWithArtifacts(): Promise<ReleaseRef[]> {
    const rows = await this.db
      .selectFrom("releases as r")
      .innerJoin("deploys as d", "d.id", "r.deploy_id")
      .select(["r.id", "r.app", "r.env", "r.artifact", "d.slot", "d.trigger"])
      .where("r.artifact", "is not", null)
      .execute();
    return rows.map((r) => ({
      id: r.id,
      app: r.app,
      env: r.env,
      // A promote makes a slot's release current: it is the environment's, not the slot's.
      slot: r.trigger === "promote" ? null : r.slot,
      artifact: r.artifact!,
    }));
  }

  /**
   * What refers to artifacts besides release history: current releases,
   * queued and active deploys, hosts, and records younger than `youngSince`.
   */
  async otherReferences(youngSince: string): Promise<ArtifactReferences> {
    const digests = new Set<string>();
    const hostReleases = new Set<string>();
    const current = await this.db
      .selectFrom("environments as e")
      .innerJoin("releases as r", "r.id", "e.current_release_id")
      .select("r.artifact")
      .where("r.artifact", "is not", null)
      .execute();
    for (const row of current) digests.add(row.artifact!);
    const deploys = await this.db
      .selectFrom("deploys")
      .select(["artifact", "installs_artifact"])
      .where("status", "not in", NOT_ACTIVE)
      .execute();
    for (const row of deploys) {
      if (row.artifact) digests.add(row.artifact);
      if (row.installs_artifact) digests.add(row.installs_artifact);
    }
    const young = await this.db
      .selectFrom("artifacts")
      .select("digest")
      .where((eb) => eb.or([eb("created_at", ">=", youngSince), eb("stored_at", ">=", youngSince)]))
      .execute();
    for (const row of young) digests.add(row.digest);
    const targets = await this.db
      .selectFrom("host_targets")
      .select(["desired_release", "actual_release", "previous_release"])
      .execute();
    for (const row of targets) {
      for (const id of [row.desired_release, row.actual_release, row.previous_release])
        if (id) hostReleases.add(id);
    }
    const held = await this.db
      .selectFrom("host_apps")
      .select(["current_release", "slots", "releases"])
      .execute();
    for (const row of held) {
      if (row.current_release) hostReleases.add(row.current_release);
      for (const id of Object.values(parseJson<Record<string, string>>(row.slots) ?? {}))
        if (typeof id === "string") hostReleases.add(id);
      for (const id of parseJson<unknown[]>(row.releases) ?? [])
        if (typeof id === "string") hostReleases.add(id);
    }
    // Digests are named by hosts as their first 16 hex digits too.
    for (const digest of digests) hostReleases.add(hostReleaseId(digest));
    return { digests, hostReleases };
  }

  /** Artifact records stored last before `before`: the candidates for removal. */
  async artifactsRecordedBefore(before: string): Promise<string[]> {
    const rows = await this.db
      .selectFrom("artifacts")
      .select("digest")
      .where("created_at", "<", before)
      .where((eb) => eb.or([eb("stored_at", "is", null), eb("stored_at", "<", before)]))
      .execute();
    return rows.map((r) => r.digest);
  }

  async countArtifacts(): Promise<number> {
    const row = await this.db
      .selectFrom("artifacts")
      .select((eb) => eb.fn.countAll<number | string>().as("n"))
      .executeTakeFirstOrThrow();
    return Number(row.n);
  }

  /**
   * An artifact's record and what points at it: the build keys that would
   * reuse it and the record of the hosts it was sent to (a host may read
   * only what it was sent, and nothing of it is stored any more).
   */
  async deleteArtifacts(digests: readonly string[]): Promise<void> {
    for (let i = 0; i < digests.length; i += PRUNE_BATCH) {
      const batch = digests.slice(i, i + PRUNE_BATCH);
      await this.db.transaction().execute(async (trx) => {
        await trx.deleteFrom("artifact_builds").where("digest", "in", batch).execute();
        await trx.deleteFrom("host_artifacts").where("digest", "in", batch).execute();
        await trx.deleteFrom("artifacts").where("digest", "in", batch).execute();
      });
    }
  }

  /**
   * Finished deploys whose logs retention removes: in each environment, not
   * among its newest `keep` deploys, finished before `before`, log still there.
   */
  async logsToPrune(keep: number, before: string): Promise<number[]> {
    const envs = await this.db.selectFrom("environments").select(["app", "env"]).execute();
    const ids: number[] = [];
    for (const { app, env } of envs) {
      // The id of the oldest deploy of the newest `keep`: older ones may go.
      const newest = await this.db
        .selectFrom("deploys")
        .select("id")
        .where("app", "=", app)
        .where("env", "=", env)
        .orderBy("id", "desc")
        .limit(1)
        .offset(Math.max(0, keep - 1))
        .executeTakeFirst();
      if (!newest) continue;
      const rows = await this.db
        .selectFrom("deploys")
        .select("id")
        .where("app", "=", app)
        .where("env", "=", env)
        .where("id", "<", newest.id)
        .where("status", "in", NOT_ACTIVE)
        .where("finished_at", "<", before)
        .where("log_pruned_at", "is", null)
        .orderBy("id")
        .execute();
      for (const row of rows) ids.push(row.id);
    }
    return ids;
  }

  /** The size of those deploys' logs. */
  async logSize(deployIds: readonly number[]): Promise<GcAmount> {
    const amount = { count: deployIds.length, bytes: 0 };
    for (let i = 0; i < deployIds.length; i += PRUNE_BATCH) {
      const row = await this.db
        .selectFrom("log_chunks")
        .select((eb) => eb.fn.coalesce(eb.fn.sum<number | string>("length"), eb.lit(0)).as("bytes"))
        .where("deploy_id", "in", deployIds.slice(i, i + PRUNE_BATCH))
        .executeTakeFirstOrThrow();
      amount.bytes += Number(row.bytes);
    }
    return amount;
  }

  /**
   * Removes those deploys' logs, a batch per transaction: the chunks go and
   * the deploy says when (only deploys still finished: none came back to life).
   */
  async pruneLogs(deployIds: readonly number[]): Promise<void> {
    const at = nowIso();
    for (let i = 0; i < deployIds.length; i += PRUNE_BATCH) {
      const batch = deployIds.slice(i, i + PRUNE_BATCH);
      await this.db.transaction().execute(async (trx) => {
        await trx.deleteFrom("log_chunks").where("deploy_id", "in", batch).execute();
        await trx
          .updateTable("deploys")
          .set({ log_pruned_at: at })
          .where("id", "in", batch)
          .where("status", "in", NOT_ACTIVE)
          .execute();
      });
    }
  }

  /** Deploys finished after `since` (anywhere): what makes a collection due after N deploys. */
  async finishedSince(since: string): Promise<number> {
    const row = await this.db
      .selectFrom("deploys")
      .select((eb) => eb.fn.countAll<number | string>().as("n"))
      .where("finished_at", ">", since)
      .executeTakeFirstOrThrow();
    return Number(row.n);
  }
}

function parseJson<T>(text: string | null): T | undefined {
  try {
    return fromJson<T>(text);
  } catch {
    return undefined;
  }
}
