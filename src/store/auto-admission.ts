import type { Kysely, Transaction } from "kysely";
import {
  type AutoDecision,
  type AutoFacts,
  decideAutoDeploy,
  type FinishedFacts,
  type SkipReason,
  sameCommits,
} from "../domain/auto-deploy-rules.js";
import type { Components, Deploy, DeployStatus } from "../domain/deploy.js";
import { insertDeploy, type LockedEnvironment, lockEnvironment, type NewDeploy } from "./deploys.js";
import { fromJson, nowIso, toDeploy, toJson } from "./rows.js";
import type { Schema } from "./schema.js";

/**
 * Whether new commits or new settings become a deploy, decided in one
 * transaction with the environment's row locked, so a poller, a webhook and
 * a reconcile — or two server processes — racing on the same change make one
 * deploy. The rules themselves are domain/auto-deploy-rules.ts; this module
 * reads the facts they need and applies the decision.
 */
export type AutoOutcome =
  | { outcome: "created" | "replaced"; deploy: Deploy }
  | { outcome: "skipped"; why: SkipReason; until?: string };

/** Deploys nobody asked for by hand: the ones a newer commit may replace while queued. */
export const AUTOMATIC_TRIGGERS = ["auto", "webhook", "push"] as const;

/** Who makes a deploy that brings new settings to the commits an environment runs. */
export const SETTINGS_USER = "turnout (config)";

export interface AutoRequest
  extends Omit<NewDeploy, "trigger" | "force" | "params" | "appRevision" | "rolledBackFrom"> {
  /** What noticed the change: the poller (`auto`), a webhook, or a push to a hosted repository. */
  trigger?: (typeof AUTOMATIC_TRIGGERS)[number];
  /** The primary component's name (`ref` and `sha` are its branch and head). */
  primary: string;
  /** The per-app revision this server runs the environment's deploys with. */
  appRevision: string;
  /** The branch heads, when `components` stops short of them (commit locks, commit limit). */
  heads?: Components;
  /** `min_interval` of the environment, and now by the engine's clock (ISO). */
  minIntervalMs?: number | undefined;
  now?: string | undefined;
}

/** How a server states the settings it has for an environment (see `decide`). */
export type SettingsClaim = "changed" | "started";

/** How many finished deploys the "failed" and "tried" rules look back over. */
const FINISHED_LOOKBACK = 20;

export class AutoAdmission {
  constructor(private readonly db: Kysely<Schema>) {}

  /**
   * Records the settings a server has for an environment as the decided
   * ones. `changed`: the server saw its configuration change them, always a
   * new decision (even when another server decided the same already: that
   * one may have been run by a server with older settings). `started`: a
   * decision only when they differ from the recorded one, so restarts change
   * nothing. A current release recorded before per-app revisions existed is
   * taken to run with these settings: an upgrade redeploys nothing.
   */
  async decide(app: string, env: string, appRevision: string, claim: SettingsClaim): Promise<boolean> {
    return this.db.transaction().execute(async (trx) => {
      const environment = await lockEnvironment(trx, app, env);
      const row = await trx
        .selectFrom("environments")
        .select(["desired_app_revision"])
        .where("app", "=", app)
        .where("env", "=", env)
        .executeTakeFirstOrThrow();
      if (environment.currentReleaseId !== null) {
        const adopted = await trx
          .updateTable("releases")
          .set({ app_revision: appRevision })
          .where("id", "=", environment.currentReleaseId)
          .where("app_revision", "is", null)
          .returning("deploy_id")
          .executeTakeFirst();
        if (adopted) {
          await trx
            .updateTable("deploys")
            .set({ app_revision: appRevision })
            .where("id", "=", adopted.deploy_id)
            .where("app_revision", "is", null)
            .execute();
        }
      }
      if (claim === "started" && row.desired_app_revision === appRevision) return false;
      await trx
        .updateTable("environments")
        .set({ desired_app_revision: appRevision, desired_at: nowIso() })
        .where("app", "=", app)
        .where("env", "=", env)
        .execute();
      return true;
    });
  }

  async admit(request: AutoRequest): Promise<AutoOutcome> {
    return this.db.transaction().execute(async (trx): Promise<AutoOutcome> => {
      const environment = await lockEnvironment(trx, request.app, request.env);
      const facts = await readFacts(trx, request.app, request.env, environment);
      const decision = decideAutoDeploy(facts, {
        components: request.components,
        appRevision: request.appRevision,
        heads: request.heads,
        minIntervalMs: request.minIntervalMs,
        now: request.now,
      });
      if (decision.action === "skip") {
        return decision.until === undefined
          ? { outcome: "skipped", why: decision.why }
          : { outcome: "skipped", why: decision.why, until: decision.until };
      }
      return apply(trx, request, environment, decision);
    });
  }
}

async function readFacts(
  trx: Transaction<Schema>,
  app: string,
  env: string,
  environment: LockedEnvironment,
): Promise<AutoFacts> {
  const lock = await trx
    .selectFrom("locks")
    .select("app")
    .where("app", "=", app)
    .where("env", "=", env)
    .executeTakeFirst();
  const decided = await trx
    .selectFrom("environments")
    .select(["desired_app_revision", "desired_at"])
    .where("app", "=", app)
    .where("env", "=", env)
    .executeTakeFirstOrThrow();
  let live: AutoFacts["live"] = null;
  if (environment.currentReleaseId !== null) {
    const current = await trx
      .selectFrom("releases as r")
      .innerJoin("deploys as d", "d.id", "r.deploy_id")
      .select(["r.components", "r.app_revision", "d.rolled_back_from", "d.created_at"])
      .where("r.id", "=", environment.currentReleaseId)
      .executeTakeFirstOrThrow();
    live = {
      components: fromJson<Components>(current.components),
      appRevision: current.app_revision ?? null,
      rollback:
        current.rolled_back_from !== null
          ? { from: fromJson<Components>(current.rolled_back_from), at: current.created_at }
          : null,
    };
  }
  const pending = await trx
    .selectFrom("deploys")
    .select(["id", "status", "trigger", "components", "app_revision"])
    .where("app", "=", app)
    .where("env", "=", env)
    .where("status", "in", ["queued", "waiting", "running"])
    .orderBy("id", "asc")
    .execute();
  const finished = await trx
    .selectFrom("deploys")
    .select(["status", "components", "app_revision", "created_at"])
    .where("app", "=", app)
    .where("env", "=", env)
    .where("status", "in", ["succeeded", "failed", "cancelled"])
    .orderBy("id", "desc")
    .limit(FINISHED_LOOKBACK)
    .execute();
  const lastAutomatic = await trx
    .selectFrom("deploys")
    .select(["created_at"])
    .where("app", "=", app)
    .where("env", "=", env)
    .where("trigger", "in", [...AUTOMATIC_TRIGGERS])
    .orderBy("id", "desc")
    .limit(1)
    .executeTakeFirst();
  return {
    lastAutomaticAt: lastAutomatic?.created_at ?? null,
    locked: lock !== undefined,
    live,
    desired:
      decided.desired_app_revision !== null && decided.desired_at !== null
        ? { appRevision: decided.desired_app_revision, at: decided.desired_at }
        : null,
    pending: pending.map((row) => ({
      id: row.id,
      status: row.status as DeployStatus,
      automatic: (AUTOMATIC_TRIGGERS as readonly string[]).includes(row.trigger),
      components: fromJson<Components>(row.components),
      appRevision: row.app_revision ?? null,
    })),
    finished: finished.map(
      (row): FinishedFacts => ({
        status: row.status as DeployStatus,
        components: fromJson<Components>(row.components),
        appRevision: row.app_revision ?? null,
        createdAt: row.created_at,
      }),
    ),
  };
}

async function apply(
  trx: Transaction<Schema>,
  request: AutoRequest,
  environment: LockedEnvironment,
  decision: Exclude<AutoDecision, { action: "skip" }>,
): Promise<AutoOutcome> {
  // Branch heads are deployed as their branch; other commits (a rollback
  // holding its commits) by their SHA.
  const heads = sameCommits(decision.components, request.heads ?? request.components);
  const sha = decision.components[request.primary] ?? request.sha;
  const values = {
    ref: heads ? request.ref : sha,
    sha,
    components: decision.components,
    user: decision.settingsOnly ? SETTINGS_USER : request.user,
    trigger: request.trigger ?? "auto",
    configRevision: request.configRevision,
    appRevision: decision.appRevision,
    rolledBackFrom: decision.rolledBackFrom,
  };
  if (decision.action === "replace") {
    const replaced = await trx
      .updateTable("deploys")
      .set({
        ref: values.ref,
        sha: values.sha,
        components: toJson(values.components),
        user_name: values.user,
        trigger: values.trigger,
        config_revision: values.configRevision,
        app_revision: values.appRevision,
        rolled_back_from: values.rolledBackFrom ? toJson(values.rolledBackFrom) : null,
        created_at: nowIso(),
      })
      .where("id", "=", decision.deployId)
      .where("status", "=", "queued")
      .returningAll()
      .executeTakeFirstOrThrow();
    return { outcome: "replaced", deploy: toDeploy(replaced) };
  }
  const deploy = await insertDeploy(
    trx,
    { app: request.app, env: request.env, ...values, force: false, params: {} },
    environment,
    [],
  );
  return { outcome: "created", deploy };
}
