import { type Kysely, sql, type Transaction } from "kysely";
import { type AuditActor, sourceOfTrigger } from "../domain/audit.js";
import {
  type Components,
  type Deploy,
  type DeployStatus,
  deployLabel,
  deployNotFound,
  type FailureCode,
  type Trigger,
} from "../domain/deploy.js";
import type { Emergency } from "../domain/emergency.js";
import { TurnoutError } from "../domain/errors.js";
import type { Lock } from "../domain/lock.js";
import { deployEvent, deployEventKind, fleetEvent } from "../domain/notification-event.js";
import { insertAudit } from "./audit.js";
import type { Capabilities } from "./capabilities.js";
import { appendNote } from "./logs.js";
import { recordNotifyEvent } from "./notify-outbox.js";
import { fromJson, isoIn, nowIso, toDeploy, toJson, toLock } from "./rows.js";
import type { Schema } from "./schema.js";

export interface NewDeploy {
  app: string;
  env: string;
  trigger: Trigger;
  user: string;
  ref: string;
  sha: string;
  components: Components;
  params: Record<string, string>;
  force: boolean;
  configRevision: string;
  /** The per-app revision it is meant to run with (the worker records the one it runs with when it starts). */
  appRevision?: string | null;
  rollbackOf?: number | null;
  /** On a rollback: the components of the release being replaced. */
  rolledBackFrom?: Components | null;
  /** Fleets: point this slot instead of `current`. */
  slot?: string | null;
  /** Fleets: deploy this uploaded artifact. */
  artifact?: string | null;
  environmentConfig?: unknown;
  /** A promotion: where the release comes from. */
  promotedFrom?: { env: string; deployId: number; deployNumber: number } | null;
  /** Why, as the requester said. */
  reason?: string | null;
  /** An emergency deploy of a working tree (domain/emergency.ts). */
  emergency?: Emergency | null;
  /** Who asked, for the audit trail; default: the user, from where the trigger says. */
  actor?: AuditActor;
}

/**
 * Decides, inside the transaction that creates the deploy and with the lock
 * row read in that same transaction, whether the deploy may enter; returns the
 * safeties it ignored (or throws E_LOCKED).
 */
export type AdmissionGuard = (lock: Lock | undefined) => { ignoredSafeties: string[] };

export interface DeployFilter {
  app?: string;
  env?: string;
  status?: DeployStatus;
  /** Only deploys with an id below this (pagination, newest first). */
  before?: number;
  limit: number;
}

export interface Outcome {
  status: "succeeded" | "failed" | "cancelled";
  errorCode?: FailureCode | null;
  errorMessage?: string | null;
  /** For a success: the release to record and make current. */
  release?: {
    fingerprint: string;
    environmentConfig: unknown;
    artifact?: string | null;
    /** Platform providers: the platform's id of the release. */
    providerRelease?: string | null;
  };
}

const ACTIVE = ["waiting", "running"] as const;

/** An update of deploy `id` that changes it only while `owner` holds its lease. */
function updateHeld(db: Kysely<Schema>, id: number, owner: string, set: Record<string, unknown>) {
  return db.updateTable("deploys").set(set).where("id", "=", id).where("lease_owner", "=", owner);
}

export class DeployStore {
  constructor(
    private readonly db: Kysely<Schema>,
    private readonly caps: Capabilities,
  ) {}

  /** Numbers and inserts a deploy; the environment row's counter serialises numbering per environment. */
  async create(input: NewDeploy, guard: AdmissionGuard): Promise<Deploy> {
    return this.db.transaction().execute(async (trx) => {
      const environment = await lockEnvironment(trx, input.app, input.env);
      const lockRow = await trx
        .selectFrom("locks")
        .selectAll()
        .where("app", "=", input.app)
        .where("env", "=", input.env)
        .executeTakeFirst();
      const { ignoredSafeties } = guard(lockRow ? toLock(lockRow) : undefined);
      const deploy = await insertDeploy(trx, input, environment, ignoredSafeties);
      await notifyDeploy(trx, deploy);
      return deploy;
    });
  }

  async get(id: number): Promise<Deploy> {
    const row = await this.db.selectFrom("deploys").selectAll().where("id", "=", id).executeTakeFirst();
    if (!row) throw deployNotFound(id);
    return toDeploy(row);
  }

  /** The environment settings a deploy must run with, when pinned (rollbacks); null: the current configuration. */
  async environmentConfigOf(id: number): Promise<unknown | null> {
    const row = await this.db
      .selectFrom("deploys")
      .select("environment_config")
      .where("id", "=", id)
      .executeTakeFirst();
    return row?.environment_config ? JSON.parse(row.environment_config) : null;
  }

  async getByNumber(app: string, env: string, number: number): Promise<Deploy> {
    const row = await this.db
      .selectFrom("deploys")
      .selectAll()
      .where("app", "=", app)
      .where("env", "=", env)
      .where("number", "=", number)
      .executeTakeFirst();
    if (!row) throw deployNotFound({ app, env, number });
    return toDeploy(row);
  }

  async list(filter: DeployFilter): Promise<Deploy[]> {
    let query = this.db.selectFrom("deploys").selectAll().orderBy("id", "desc").limit(filter.limit);
    if (filter.app) query = query.where("app", "=", filter.app);
    if (filter.env) query = query.where("env", "=", filter.env);
    if (filter.status) query = query.where("status", "=", filter.status);
    if (filter.before !== undefined) query = query.where("id", "<", filter.before);
    return (await query.execute()).map(toDeploy);
  }

  /** The queued deploys of an environment, in the order they will run. */
  async queued(app: string, env: string): Promise<Deploy[]> {
    const rows = await this.db
      .selectFrom("deploys")
      .selectAll()
      .where("app", "=", app)
      .where("env", "=", env)
      .where("status", "=", "queued")
      .orderBy("id", "asc")
      .execute();
    return rows.map(toDeploy);
  }

  async active(app: string, env: string): Promise<Deploy | undefined> {
    const row = await this.db
      .selectFrom("deploys")
      .selectAll()
      .where("app", "=", app)
      .where("env", "=", env)
      .where("status", "in", ACTIVE)
      .executeTakeFirst();
    return row ? toDeploy(row) : undefined;
  }

  /**
   * Claims the oldest queued deploy of an environment that has no active
   * deploy, under a lease. Two claimers racing for the same row: the
   * `status = 'queued'` recheck lets one win; for the same environment the
   * unique partial index does, and the loser simply tries again.
   */
  async claimNext(owner: string, leaseMs: number): Promise<Deploy | undefined> {
    // On PostgreSQL the candidate is locked FOR UPDATE SKIP LOCKED in the
    // claiming transaction: servers claiming at the same moment take
    // different deploys instead of queueing behind one row's lock.
    const skipLocked = this.caps.dialect === "postgres";
    // Every server pumps at least once a second and on every deploy event, and almost always
    // finds nothing: one read then, instead of BEGIN, the same read and COMMIT.
    if (this.caps.statementRoundTrips) {
      const queued = await this.db
        .selectFrom("deploys")
        .select("id")
        .where("status", "=", "queued")
        .limit(1)
        .executeTakeFirst();
      if (!queued) return undefined;
    }
    for (let attempt = 0; attempt < 5; attempt++) {
      try {
        const claimed = await this.db.transaction().execute(async (trx) => {
          const candidate = await trx
            .selectFrom("deploys as d")
            .select("d.id")
            .where("d.status", "=", "queued")
            .where(({ not, exists, selectFrom }) =>
              not(
                exists(
                  selectFrom("deploys as a")
                    .select("a.id")
                    .whereRef("a.app", "=", "d.app")
                    .whereRef("a.env", "=", "d.env")
                    .where("a.status", "in", ACTIVE),
                ),
              ),
            )
            .where(({ eb, selectFrom }) =>
              eb(
                "d.id",
                "=",
                selectFrom("deploys as q")
                  .select(({ fn }) => fn.min("q.id").as("m"))
                  .whereRef("q.app", "=", "d.app")
                  .whereRef("q.env", "=", "d.env")
                  .where("q.status", "=", "queued"),
              ),
            )
            .orderBy("d.id", "asc")
            .limit(1)
            .$if(skipLocked, (q) => q.forUpdate("d").skipLocked())
            .executeTakeFirst();
          if (!candidate) return null;
          const row = await trx
            .updateTable("deploys")
            .set({
              status: "running",
              phase: "starting",
              started_at: nowIso(),
              lease_owner: owner,
              lease_expires_at: isoIn(leaseMs),
            })
            .where("id", "=", candidate.id)
            .where("status", "=", "queued")
            .returningAll()
            .executeTakeFirst();
          if (!row) return undefined;
          const deploy = toDeploy(row);
          await notifyDeploy(trx, deploy);
          return deploy;
        });
        if (claimed === null) return undefined;
        if (claimed) return claimed;
      } catch (error) {
        if (!this.caps.isUniqueViolation(error)) throw error;
      }
    }
    return undefined;
  }

  /** Extends the lease; false when it was lost (recovered by someone else, or finished). */
  async renewLease(
    id: number,
    owner: string,
    leaseMs: number,
  ): Promise<{ held: boolean; cancelRequested: boolean }> {
    const row = await this.db
      .updateTable("deploys")
      .set({ lease_expires_at: isoIn(leaseMs) })
      .where("id", "=", id)
      .where("lease_owner", "=", owner)
      .where("status", "in", ACTIVE)
      .returning(["cancel_requested"])
      .executeTakeFirst();
    return { held: row !== undefined, cancelRequested: row?.cancel_requested === 1 };
  }

  async update(
    id: number,
    owner: string,
    changes: {
      phase?: string;
      pid?: number | null;
      sha?: string;
      previousSha?: string | null;
      configRevision?: string;
      appRevision?: string;
      status?: "waiting" | "running";
    },
  ): Promise<void> {
    const set: Record<string, unknown> = {};
    if (changes.configRevision !== undefined) set["config_revision"] = changes.configRevision;
    if (changes.appRevision !== undefined) set["app_revision"] = changes.appRevision;
    if (changes.status !== undefined) set["status"] = changes.status;
    if (changes.phase !== undefined) set["phase"] = changes.phase;
    if (changes.pid !== undefined) set["pid"] = changes.pid;
    if (changes.sha !== undefined) set["sha"] = changes.sha;
    if (changes.previousSha !== undefined) set["previous_sha"] = changes.previousSha;
    if (Object.keys(set).length === 0) return;
    if (changes.status !== "waiting") {
      await updateHeld(this.db, id, owner, set).execute();
      return;
    }
    // Waiting (for an approval): told to the outside world with the change.
    await this.db.transaction().execute(async (trx) => {
      const row = await updateHeld(trx, id, owner, set).returningAll().executeTakeFirst();
      if (row) await notifyDeploy(trx, toDeploy(row));
    });
  }

  /**
   * An active deploy's phase (and its status, when it becomes `running`),
   * with the phase's entry in the deploy's timeline (deploy_phases), while
   * `owner` holds it: on PostgreSQL one statement (the update, and the entry
   * made from the row it returns), elsewhere one transaction. A fleet deploy
   * changes phase at every batch, and the two were a round trip each on the
   * deploy's way. A change to `waiting` is told to the outside world: see
   * update(). Nothing is written when the lease is another's.
   */
  async setPhase(id: number, owner: string, phase: string, status?: "running"): Promise<void> {
    const at = nowIso();
    const set = { phase, ...(status ? { status } : {}) };
    if (this.caps.statementRoundTrips) {
      await sql`
        WITH u AS (
          UPDATE deploys SET phase = ${phase}, status = COALESCE(${status ?? null}::text, status)
          WHERE id = ${id} AND lease_owner = ${owner} RETURNING id, status
        )
        INSERT INTO deploy_phases (deploy_id, phase, status, at)
        SELECT u.id, ${phase}::text, u.status, ${at}::text FROM u`.execute(this.db);
      return;
    }
    await this.db.transaction().execute(async (trx) => {
      const row = await updateHeld(trx, id, owner, set).returning(["status"]).executeTakeFirst();
      if (row)
        await trx
          .insertInto("deploy_phases")
          .values({ deploy_id: id, phase, status: row.status, at })
          .execute();
    });
  }

  /**
   * Records the artifact an active deploy installs (built, reused or given),
   * before it stages anything: the garbage collector keeps what queued and
   * active deploys name, and the release takes over when the deploy ends.
   */
  async recordArtifact(id: number, digest: string): Promise<void> {
    await this.db
      .updateTable("deploys")
      .set({ installs_artifact: digest })
      .where("id", "=", id)
      .where("status", "in", ACTIVE)
      .execute();
  }

  /**
   * Ends a deploy this owner holds. A success records the release and makes
   * it the environment's current one in the same transaction, so the history
   * never shows a deploy succeeded without its release.
   */
  async finish(id: number, owner: string, outcome: Outcome): Promise<Deploy> {
    return this.db.transaction().execute(async (trx) => {
      const row = await trx
        .selectFrom("deploys")
        .selectAll()
        .where("id", "=", id)
        .where("lease_owner", "=", owner)
        .where("status", "in", ACTIVE)
        .executeTakeFirst();
      if (!row) throw new TurnoutError("E_CONFLICT", `deploy ${id} is no longer held by this worker`);
      const now = nowIso();
      let releaseId: number | null = null;
      if (outcome.status === "succeeded" && outcome.release) {
        const emergency = row.emergency
          ? toJson({ ...fromJson<Emergency>(row.emergency), by: row.user_name, deployNumber: row.number })
          : await inheritedEmergency(trx, row.app, row.env, row.artifact);
        const release = await trx
          .insertInto("releases")
          .values({
            app: row.app,
            env: row.env,
            deploy_id: row.id,
            deploy_number: row.number,
            fingerprint: outcome.release.fingerprint,
            components: row.components,
            config_revision: row.config_revision,
            app_revision: row.app_revision ?? null,
            environment_config: toJson(outcome.release.environmentConfig),
            created_at: now,
            artifact: outcome.release.artifact ?? null,
            emergency: emergency ?? null,
            provider_release: outcome.release.providerRelease ?? null,
          })
          .returning("id")
          .executeTakeFirstOrThrow();
        releaseId = release.id;
        // A deploy to a named slot puts a second version beside the live one:
        // it is recorded, but the environment's current release stays.
        const live = row.slot === null || row.trigger === "promote";
        if (live)
          await trx
            .updateTable("environments")
            .set({ current_release_id: releaseId, current_deploy_id: row.id, updated_at: now })
            .where("app", "=", row.app)
            .where("env", "=", row.env)
            .execute();
      }
      const updated = await trx
        .updateTable("deploys")
        .set({
          status: outcome.status,
          phase: null,
          error_code: outcome.errorCode ?? null,
          error_message: outcome.errorMessage ?? null,
          release_id: releaseId,
          finished_at: now,
          lease_owner: null,
          lease_expires_at: null,
          pid: null,
        })
        .where("id", "=", id)
        .returningAll()
        .executeTakeFirstOrThrow();
      const deploy = toDeploy(updated);
      await notifyDeploy(trx, deploy);
      return deploy;
    });
  }

  /**
   * Asks a deploy to stop. A queued one is cancelled on the spot; an active
   * one is flagged and its worker stops it (and records the outcome).
   */
  async requestCancel(id: number, by: string): Promise<Deploy> {
    const now = nowIso();
    const queued = await this.db.transaction().execute(async (trx) => {
      const row = await trx
        .updateTable("deploys")
        .set({
          status: "cancelled",
          finished_at: now,
          cancel_requested: 1,
          error_message: `cancelled by ${by} before it started`,
        })
        .where("id", "=", id)
        .where("status", "=", "queued")
        .returningAll()
        .executeTakeFirst();
      if (row) {
        await appendNote(trx, id, `==> cancelled by ${by} before it started`);
        await notifyDeploy(trx, toDeploy(row), by);
      }
      return row;
    });
    if (queued) return toDeploy(queued);
    const active = await this.db
      .updateTable("deploys")
      .set({ cancel_requested: 1 })
      .where("id", "=", id)
      .where("status", "in", ACTIVE)
      .returningAll()
      .executeTakeFirst();
    if (active) return toDeploy(active);
    const current = await this.get(id);
    throw new TurnoutError(
      "E_NOT_CANCELLABLE",
      `deploy ${current.app}/${current.env}#${current.number} is already ${current.status}`,
      {
        status: current.status,
      },
    );
  }

  /** Active deploys whose lease has run out, or is held by an owner the caller knows is dead. */
  async abandoned(
    ownerIsDead: (owner: string) => boolean,
  ): Promise<{ deploy: Deploy; owner: string | null; pid: number | null }[]> {
    const rows = await this.db.selectFrom("deploys").selectAll().where("status", "in", ACTIVE).execute();
    const now = nowIso();
    return rows
      .filter((r) => r.lease_owner === null || (r.lease_expires_at ?? "") < now || ownerIsDead(r.lease_owner))
      .map((r) => ({ deploy: toDeploy(r), owner: r.lease_owner, pid: r.pid }));
  }

  /** Marks an abandoned deploy failed with `interrupted`, if it is still held by `owner`. */
  async markInterrupted(id: number, owner: string | null, message: string): Promise<boolean> {
    return this.db.transaction().execute(async (trx) => {
      let query = trx
        .updateTable("deploys")
        .set({
          status: "failed",
          phase: null,
          error_code: "interrupted",
          error_message: message,
          finished_at: nowIso(),
          lease_owner: null,
          lease_expires_at: null,
          pid: null,
        })
        .where("id", "=", id)
        .where("status", "in", ACTIVE);
      query =
        owner === null ? query.where("lease_owner", "is", null) : query.where("lease_owner", "=", owner);
      const row = await query.returningAll().executeTakeFirst();
      if (!row) return false;
      await appendNote(trx, id, `==> interrupted: ${message}; marked failed (interrupted)`);
      await notifyDeploy(trx, toDeploy(row));
      return true;
    });
  }
}

export interface LockedEnvironment {
  deploySeq: number;
  currentDeployId: number | null;
  currentReleaseId: number | null;
}

/**
 * Makes sure the environment's row exists and locks it for the rest of the
 * transaction (PostgreSQL: a row lock; SQLite: the write transaction), so
 * numbering and admission decisions for one environment never interleave.
 */
export async function lockEnvironment(
  trx: Transaction<Schema>,
  app: string,
  env: string,
): Promise<LockedEnvironment> {
  const now = nowIso();
  await trx
    .insertInto("environments")
    .values({ app, env, deploy_seq: 0, updated_at: now })
    .onConflict((oc) => oc.columns(["app", "env"]).doNothing())
    .execute();
  const row = await trx
    .updateTable("environments")
    .set({ updated_at: now })
    .where("app", "=", app)
    .where("env", "=", env)
    .returning(["deploy_seq", "current_deploy_id", "current_release_id"])
    .executeTakeFirstOrThrow();
  return {
    deploySeq: row.deploy_seq,
    currentDeployId: row.current_deploy_id,
    currentReleaseId: row.current_release_id,
  };
}

/** Inserts a queued deploy with the environment's next number (the environment row must be locked). */
export async function insertDeploy(
  trx: Transaction<Schema>,
  input: NewDeploy,
  environment: LockedEnvironment,
  ignoredSafeties: string[],
): Promise<Deploy> {
  const now = nowIso();
  const number = environment.deploySeq + 1;
  await trx
    .updateTable("environments")
    .set({ deploy_seq: number })
    .where("app", "=", input.app)
    .where("env", "=", input.env)
    .execute();
  const previous =
    environment.currentDeployId === null
      ? undefined
      : await trx
          .selectFrom("deploys")
          .select("sha")
          .where("id", "=", environment.currentDeployId)
          .executeTakeFirst();
  const row = await trx
    .insertInto("deploys")
    .values({
      app: input.app,
      env: input.env,
      number,
      status: "queued",
      phase: null,
      trigger: input.trigger,
      user_name: input.user,
      ref: input.ref,
      sha: input.sha,
      components: toJson(input.components),
      previous_sha: previous?.sha ?? null,
      params: toJson(input.params),
      force: input.force ? 1 : 0,
      ignored_safeties: toJson(ignoredSafeties),
      rollback_of: input.rollbackOf ?? null,
      rolled_back_from: input.rolledBackFrom ? toJson(input.rolledBackFrom) : null,
      slot: input.slot ?? null,
      artifact: input.artifact ?? null,
      config_revision: input.configRevision,
      app_revision: input.appRevision ?? null,
      environment_config: input.environmentConfig === undefined ? null : toJson(input.environmentConfig),
      created_at: now,
      cancel_requested: 0,
      promoted_from_env: input.promotedFrom?.env ?? null,
      promoted_from_deploy: input.promotedFrom?.deployId ?? null,
      promoted_from_number: input.promotedFrom?.deployNumber ?? null,
      reason: input.reason ?? null,
      ...(input.emergency ? { emergency: toJson(input.emergency) } : {}),
    })
    .returningAll()
    .executeTakeFirstOrThrow();
  const deploy = toDeploy(row);
  // Every deploy enters through here (requests, rollbacks, auto-deploys,
  // fleet operations): its audit event is written here, in its transaction.
  await insertAudit(
    trx,
    {
      actor: input.actor ?? {
        name: input.user,
        tokenId: null,
        role: null,
        source: sourceOfTrigger(input.trigger),
      },
      action: input.rollbackOf != null ? "rollback" : "deploy",
      app: input.app,
      env: input.env,
      target: deployLabel(deploy),
      details: {
        deploy: deploy.id,
        number,
        trigger: input.trigger,
        ref: input.ref,
        sha: input.sha,
        force: input.force,
        ...(ignoredSafeties.length > 0 ? { ignoredSafeties } : {}),
        ...(input.rollbackOf != null ? { rollbackOf: input.rollbackOf } : {}),
        ...(input.slot ? { slot: input.slot } : {}),
        ...(input.artifact ? { artifact: input.artifact } : {}),
        // Names only: parameter values are the caller's text and may be anything.
        ...(Object.keys(input.params).length > 0 ? { params: Object.keys(input.params).sort() } : {}),
      },
    },
    now,
  );
  return deploy;
}

/**
 * A deploy that installs a given artifact (a rollback, a reconcile, a
 * promote, an upload) of the same content as an emergency release installs
 * that unreviewed change again: its release carries the same record.
 */
async function inheritedEmergency(
  trx: Transaction<Schema>,
  app: string,
  env: string,
  artifact: string | null,
): Promise<string | null> {
  if (artifact === null) return null;
  const row = await trx
    .selectFrom("releases")
    .select("emergency")
    .where("app", "=", app)
    .where("env", "=", env)
    .where("artifact", "=", artifact)
    .where("emergency", "is not", null)
    .orderBy("id", "desc")
    .limit(1)
    .executeTakeFirst();
  return row?.emergency ?? null;
}

/**
 * The deploy's new state as a notification event, written in the transaction
 * that made the change (the transactional outbox: src/notify/).
 */
async function notifyDeploy(trx: Transaction<Schema>, deploy: Deploy, actor?: string): Promise<void> {
  const kind = deployEventKind(deploy);
  if (kind) await recordNotifyEvent(trx, deployEvent(deploy, kind, nowIso(), actor));
  // A reconcile (asked for, or self-heal) that succeeded brought drifted hosts back: drift healed.
  if (kind === "deploy.succeeded" && deploy.trigger === "reconcile")
    await recordNotifyEvent(trx, fleetEvent("drift.healed", deploy.app, deploy.env, [], nowIso(), deploy));
}
