import type { Kysely } from "kysely";
import type { Components, Deploy } from "../domain/deploy.js";
import { insertDeploy, lockEnvironment, type NewDeploy } from "./deploys.js";
import { nowIso, toDeploy, toJson } from "./rows.js";
import type { Schema } from "./schema.js";

/**
 * Whether new commits (or a new configuration) become a deploy, decided in
 * one transaction with the environment's row locked, so a poller and a
 * webhook — or two server processes — racing on the same commit make one
 * deploy. The rules, in order:
 *
 * - a locked environment gets nothing (it catches up after unlock: the next
 *   poll sees the same difference);
 * - what the environment runs already, or a deploy already queued or running
 *   with the same commits, is not deployed again;
 * - commits a rollback moved away from are not brought back until a newer
 *   commit arrives;
 * - commits whose last deploy here failed or was cancelled are not retried by
 *   themselves (a person may deploy them again; a newer commit goes ahead);
 * - a queued auto-deploy is replaced by the newer one instead of queueing a
 *   second (coalescing); deploys someone asked for are never replaced.
 */
export type AutoOutcome =
  | { outcome: "created" | "replaced"; deploy: Deploy }
  | { outcome: "skipped"; why: "locked" | "current" | "rolled-back" | "active" | "queued" | "failed" };

/** Deploys nobody asked for by hand: the ones a newer commit may replace while queued. */
export const AUTOMATIC_TRIGGERS = ["auto", "webhook", "push"] as const;

export interface AutoRequest extends Omit<NewDeploy, "trigger" | "force" | "params"> {
  /** What noticed the change: the poller (`auto`), a webhook, or a push to a hosted repository. */
  trigger?: (typeof AUTOMATIC_TRIGGERS)[number];
  /** A new configuration revision: redeploy even if the commits are the same. */
  configChanged: boolean;
}

export class AutoAdmission {
  constructor(private readonly db: Kysely<Schema>) {}

  async admit(request: AutoRequest): Promise<AutoOutcome> {
    return this.db.transaction().execute(async (trx): Promise<AutoOutcome> => {
      const environment = await lockEnvironment(trx, request.app, request.env);
      const lock = await trx
        .selectFrom("locks")
        .select("app")
        .where("app", "=", request.app)
        .where("env", "=", request.env)
        .executeTakeFirst();
      if (lock) return { outcome: "skipped", why: "locked" };

      const wanted = canonical(request.components);
      if (environment.currentReleaseId !== null) {
        const current = await trx
          .selectFrom("releases as r")
          .innerJoin("deploys as d", "d.id", "r.deploy_id")
          .select(["r.components", "r.config_revision", "d.rolled_back_from"])
          .where("r.id", "=", environment.currentReleaseId)
          .executeTakeFirstOrThrow();
        const sameCode = canonical(JSON.parse(current.components)) === wanted;
        if (sameCode && (!request.configChanged || current.config_revision === request.configRevision)) {
          return { outcome: "skipped", why: "current" };
        }
        if (current.rolled_back_from !== null && canonical(JSON.parse(current.rolled_back_from)) === wanted) {
          return { outcome: "skipped", why: "rolled-back" };
        }
      }

      const pending = await trx
        .selectFrom("deploys")
        .selectAll()
        .where("app", "=", request.app)
        .where("env", "=", request.env)
        .where("status", "in", ["queued", "waiting", "running"])
        .orderBy("id", "asc")
        .execute();
      for (const row of pending) {
        if (canonical(JSON.parse(row.components)) !== wanted) continue;
        if (
          row.status !== "queued" &&
          request.configChanged &&
          row.config_revision !== request.configRevision
        )
          continue;
        return { outcome: "skipped", why: row.status === "queued" ? "queued" : "active" };
      }
      if (!request.configChanged) {
        const last = await trx
          .selectFrom("deploys")
          .select(["status", "components"])
          .where("app", "=", request.app)
          .where("env", "=", request.env)
          .where("status", "in", ["succeeded", "failed", "cancelled"])
          .orderBy("id", "desc")
          .limit(20)
          .execute();
        const lastOfThese = last.find((row) => canonical(JSON.parse(row.components)) === wanted);
        if (lastOfThese && lastOfThese.status !== "succeeded") return { outcome: "skipped", why: "failed" };
      }
      const queuedAuto = pending.find(
        (row) => row.status === "queued" && (AUTOMATIC_TRIGGERS as readonly string[]).includes(row.trigger),
      );
      if (queuedAuto) {
        const replaced = await trx
          .updateTable("deploys")
          .set({
            ref: request.ref,
            sha: request.sha,
            components: toJson(request.components),
            config_revision: request.configRevision,
            trigger: request.trigger ?? "auto",
            created_at: nowIso(),
          })
          .where("id", "=", queuedAuto.id)
          .where("status", "=", "queued")
          .returningAll()
          .executeTakeFirstOrThrow();
        return { outcome: "replaced", deploy: toDeploy(replaced) };
      }
      const deploy = await insertDeploy(
        trx,
        { ...request, trigger: request.trigger ?? "auto", force: false, params: {} },
        environment,
        [],
      );
      return { outcome: "created", deploy };
    });
  }
}

/** Components as a canonical string: equal commits compare equal whatever the key order. */
function canonical(components: Components): string {
  return JSON.stringify(
    Object.keys(components)
      .sort()
      .map((k) => [k, components[k]]),
  );
}
