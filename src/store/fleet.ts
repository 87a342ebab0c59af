import { type Kysely, sql } from "kysely";
import { TurnoutError } from "../domain/errors.js";
import type { HostStep, PoolState } from "../domain/fleet.js";
import { fleetEvent } from "../domain/notification-event.js";
import type { Capabilities } from "./capabilities.js";
import { FleetHostWrites } from "./fleet-host-writes.js";
import { type GroupCommit, groupCommitFor } from "./group-commit.js";
import { recordNotifyEvent } from "./notify-outbox.js";
import { nowIso } from "./rows.js";
import type { Schema } from "./schema.js";

/**
 * The server's record of fleet deploys: per deploy and host, the step reached
 * and what was switched (so a crash mid-deploy can be rolled back from the
 * record, never from directory timestamps); per host and environment, the
 * desired and actual release.
 */
export interface DeployHost {
  deployId: number;
  hostId: number;
  hostName: string;
  step: HostStep;
  batch: number | null;
  releaseId: string;
  previousRelease: string | null;
  switched: boolean;
  bytesFetched: number;
  error: string | null;
  updatedAt: string;
}

export interface HostTarget {
  hostId: number;
  app: string;
  env: string;
  desiredRelease: string | null;
  actualRelease: string | null;
  previousRelease: string | null;
  deployId: number | null;
}

export type Approval = "requested" | "approved" | "aborted";

export class FleetStore {
  constructor(
    private readonly db: Kysely<Schema>,
    private readonly caps: Capabilities,
    /** SQLite: the writes of a turn, of every store, in one commit (group-commit.ts). */
    private readonly group: GroupCommit | undefined = groupCommitFor(db, caps),
  ) {
    this.hostWrites = new FleetHostWrites(db);
  }

  /** PostgreSQL: hosts' steps and targets, grouped into few statements (fleet-host-writes.ts). */
  private readonly hostWrites: FleetHostWrites;

  async addDeployHosts(
    deployId: number,
    hosts: { id: number; name: string }[],
    releaseId: string,
  ): Promise<void> {
    if (hosts.length === 0) return;
    const now = nowIso();
    if (this.caps.arrayParameters) {
      // One text whatever the number of hosts (HostStore.upsertApps says why).
      await sql`
        INSERT INTO deploy_hosts (deploy_id, host_id, host_name, step, release_id, switched, bytes_fetched, updated_at)
        SELECT ${deployId}::int, h.id, h.name, 'pending', ${releaseId}::text, 0, 0, ${now}::text
        FROM unnest(${hosts.map((h) => h.id)}::int[], ${hosts.map((h) => h.name)}::text[]) AS h(id, name)
        ON CONFLICT (deploy_id, host_id) DO NOTHING`.execute(this.db);
      return;
    }
    await this.db
      .insertInto("deploy_hosts")
      .values(
        hosts.map((h) => ({
          deploy_id: deployId,
          host_id: h.id,
          host_name: h.name,
          step: "pending",
          batch: null,
          release_id: releaseId,
          previous_release: null,
          switched: 0,
          bytes_fetched: 0,
          error: null,
          updated_at: now,
        })),
      )
      .onConflict((oc) => oc.columns(["deploy_id", "host_id"]).doNothing())
      .execute();
  }

  /**
   * One host's step of a deploy. Updates asked for in the same turn of the
   * event loop are written in one transaction (group commit): a fleet's hosts
   * move through their steps together, and one durable commit per host and
   * step was a flush each, with the event loop waiting on SQLite for every
   * one of them. Each promise still settles only once its update is durable.
   * On SQLite the turn's transaction is the one of every store's writes
   * (GroupCommit: inventories, last seen, targets too); on PostgreSQL the
   * updates asked for within a few milliseconds, and those asked for while
   * the previous group is written, are one statement with the targets set
   * meanwhile (FleetHostWrites), and a failed statement fails every write of
   * its group (none was written).
   */
  updateDeployHost(
    deployId: number,
    hostId: number,
    changes: Partial<
      Pick<DeployHost, "step" | "batch" | "previousRelease" | "switched" | "bytesFetched" | "error">
    >,
  ): Promise<void> {
    const set: Record<string, unknown> = { updated_at: nowIso() };
    if (changes.step !== undefined) set["step"] = changes.step;
    if (changes.batch !== undefined) set["batch"] = changes.batch;
    if (changes.previousRelease !== undefined) set["previous_release"] = changes.previousRelease;
    if (changes.switched !== undefined) set["switched"] = changes.switched ? 1 : 0;
    // When `current` moved there (kept if the host is switched back later: it did run the release).
    if (changes.switched === true) set["switched_at"] = set["updated_at"];
    if (changes.bytesFetched !== undefined) set["bytes_fetched"] = changes.bytesFetched;
    if (changes.error !== undefined) set["error"] = changes.error;
    if (this.group) return this.group.run((db) => this.updateOne(db, { deployId, hostId, set }));
    return this.hostWrites.step({ deployId, hostId, set });
  }

  private async updateOne(
    db: Kysely<Schema>,
    row: { deployId: number; hostId: number; set: Record<string, unknown> },
  ): Promise<void> {
    await db
      .updateTable("deploy_hosts")
      .set(row.set)
      .where("deploy_id", "=", row.deployId)
      .where("host_id", "=", row.hostId)
      .execute();
  }

  async deployHosts(deployId: number): Promise<DeployHost[]> {
    const rows = await this.db
      .selectFrom("deploy_hosts")
      .selectAll()
      .where("deploy_id", "=", deployId)
      .orderBy("host_name")
      .execute();
    return rows.map((r) => ({
      deployId: r.deploy_id,
      hostId: r.host_id,
      hostName: r.host_name,
      step: r.step as HostStep,
      batch: r.batch,
      releaseId: r.release_id,
      previousRelease: r.previous_release,
      switched: r.switched === 1,
      bytesFetched: Number(r.bytes_fetched),
      error: r.error,
      updatedAt: r.updated_at,
    }));
  }

  /** Records what a host should run and what it runs now for an environment. */
  setTarget(target: HostTarget): Promise<void> {
    if (this.group) return this.group.run((db) => this.writeTargets(db, [target]));
    // PostgreSQL: with the hosts' steps of the moment, in one statement (FleetHostWrites).
    return this.hostWrites.target(target);
  }

  /** SQLite, in the turn's group commit. */
  private async writeTargets(db: Kysely<Schema>, targets: HostTarget[]): Promise<void> {
    const now = nowIso();
    await db
      .insertInto("host_targets")
      .values(
        targets.map((target) => ({
          host_id: target.hostId,
          app: target.app,
          env: target.env,
          desired_release: target.desiredRelease,
          actual_release: target.actualRelease,
          previous_release: target.previousRelease,
          deploy_id: target.deployId,
          updated_at: now,
        })),
      )
      .onConflict((oc) =>
        oc.columns(["host_id", "app", "env"]).doUpdateSet((eb) => ({
          desired_release: eb.ref("excluded.desired_release"),
          actual_release: eb.ref("excluded.actual_release"),
          previous_release: eb.ref("excluded.previous_release"),
          deploy_id: eb.ref("excluded.deploy_id"),
          updated_at: eb.ref("excluded.updated_at"),
        })),
      )
      .execute();
  }

  async targets(app: string, env: string): Promise<HostTarget[]> {
    const rows = await this.db
      .selectFrom("host_targets")
      .selectAll()
      .where("app", "=", app)
      .where("env", "=", env)
      .execute();
    return rows.map((r) => ({
      hostId: r.host_id,
      app: r.app,
      env: r.env,
      desiredRelease: r.desired_release,
      actualRelease: r.actual_release,
      previousRelease: r.previous_release,
      deployId: r.deploy_id,
    }));
  }

  async approval(deployId: number): Promise<{ state: Approval | null; by: string | null }> {
    const row = await this.db
      .selectFrom("deploys")
      .select(["approval", "approval_by"])
      .where("id", "=", deployId)
      .executeTakeFirst();
    return { state: (row?.approval as Approval | null) ?? null, by: row?.approval_by ?? null };
  }

  async requestApproval(deployId: number): Promise<void> {
    await this.db
      .updateTable("deploys")
      .set({ approval: "requested", approval_by: null })
      .where("id", "=", deployId)
      .execute();
  }

  /** Answers a pending approval; only a deploy waiting for one can be answered. */
  async answerApproval(deployId: number, answer: "approved" | "aborted", by: string): Promise<void> {
    const result = await this.db
      .updateTable("deploys")
      .set({ approval: answer, approval_by: by })
      .where("id", "=", deployId)
      .where("approval", "=", "requested")
      .where("status", "=", "waiting")
      .executeTakeFirst();
    if (Number(result.numUpdatedRows) === 0) {
      throw new TurnoutError("E_CONFLICT", `deploy ${deployId} is not waiting for approval`, { deployId });
    }
  }

  /**
   * Records that the server is sending an artifact to these hosts: from now
   * on their host tokens may download its manifest and blobs (and nothing
   * else). Written before the stage call, so the record exists before the
   * host asks.
   */
  async sendArtifact(hostIds: number[], digest: string, app: string): Promise<void> {
    if (hostIds.length === 0) return;
    const now = nowIso();
    await this.db
      .insertInto("host_artifacts")
      .values(hostIds.map((hostId) => ({ host_id: hostId, digest, app, sent_at: now })))
      .onConflict((oc) => oc.columns(["host_id", "digest"]).doNothing())
      .execute();
  }

  /** Whether the server sent this artifact to this host. */
  async wasSent(hostId: number, digest: string): Promise<boolean> {
    const row = await this.db
      .selectFrom("host_artifacts")
      .select("host_id")
      .where("host_id", "=", hostId)
      .where("digest", "=", digest)
      .executeTakeFirst();
    return row !== undefined;
  }

  /**
   * Pool state is per host and app: one app's failed canary takes the host out of that app's pool only.
   * With `notice`, a host newly taken out is told (`host.depooled`) in the same transaction.
   */
  async setPoolState(
    hostId: number,
    app: string,
    state: "pooled" | "depooled",
    notice?: { env: string; hostName: string },
  ): Promise<void> {
    await this.db.transaction().execute(async (trx) => {
      const before = await trx
        .selectFrom("host_pool")
        .select("pool_state")
        .where("host_id", "=", hostId)
        .where("app", "=", app)
        .executeTakeFirst();
      const now = nowIso();
      await trx
        .insertInto("host_pool")
        .values({ host_id: hostId, app, pool_state: state, updated_at: now })
        .onConflict((oc) =>
          oc.columns(["host_id", "app"]).doUpdateSet({ pool_state: state, updated_at: now }),
        )
        .execute();
      if (notice && state === "depooled" && before?.pool_state !== "depooled")
        await recordNotifyEvent(trx, fleetEvent("host.depooled", app, notice.env, [notice.hostName], now));
    });
  }

  /** The hosts depooled for `app` (every other host is pooled for it). */
  async depooled(app: string): Promise<Set<number>> {
    const rows = await this.db
      .selectFrom("host_pool")
      .select("host_id")
      .where("app", "=", app)
      .where("pool_state", "=", "depooled")
      .execute();
    return new Set(rows.map((r) => r.host_id));
  }

  /**
   * The SSH host of that name declared by `app`'s manifest (made pooled on
   * first sight), with its pool state. Host names are global and every
   * fleet record (pool state, per-host steps, artifacts sent) hangs off the
   * row, so a row belongs to one app: another app's manifest naming it, or
   * an agent's name, is refused (E_CONFLICT) instead of shared. A row from
   * before rows had an app is claimed by the first app that deploys to it.
   */
  async ensureSshHost(
    app: string,
    name: string,
    address: string,
    labels: Record<string, string>,
  ): Promise<{ id: number; poolState: PoolState }> {
    const { id } = await this.ensureSshHostRow(app, name, address, labels);
    const depooled = await this.depooled(app);
    return { id, poolState: depooled.has(id) ? "depooled" : "pooled" };
  }

  private async ensureSshHostRow(
    app: string,
    name: string,
    address: string,
    labels: Record<string, string>,
  ): Promise<{ id: number }> {
    const existing = () =>
      this.db.selectFrom("hosts").select(["id", "kind", "app"]).where("name", "=", name).executeTakeFirst();
    const owned = (row: NonNullable<Awaited<ReturnType<typeof existing>>>) => {
      if (row.kind !== "ssh") {
        throw new TurnoutError(
          "E_CONFLICT",
          `host name '${name}' belongs to an agent host: give the SSH host another name`,
          { host: name },
        );
      }
      if (row.app !== app) {
        throw new TurnoutError(
          "E_CONFLICT",
          `SSH host '${name}' is declared by another app: host names are global, give this one another name`,
          { host: name },
        );
      }
      return { id: row.id };
    };
    const found = await existing();
    if (found?.kind === "ssh" && found.app === null) {
      await this.db
        .updateTable("hosts")
        .set({ app })
        .where("id", "=", found.id)
        .where("app", "is", null)
        .execute();
      return owned((await existing())!);
    }
    if (found) return owned(found);
    await this.db
      .insertInto("hosts")
      .values({
        name,
        kind: "ssh",
        labels: JSON.stringify(labels),
        address,
        pool_state: "pooled",
        connected: 0,
        connected_to: null,
        last_seen_at: null,
        token_hash: null,
        created_at: nowIso(),
        app,
      })
      .onConflict((oc) => oc.column("name").doNothing())
      .execute();
    const made = await existing();
    if (!made) throw new Error(`host ${name} could not be recorded`);
    return owned(made);
  }
}
