import type { Kysely } from "kysely";
import { notFound } from "../domain/errors.js";
import type { EnvironmentState, Release } from "../domain/release.js";
import { toRelease } from "./rows.js";
import type { Schema } from "./schema.js";

/** Releases (what was live) and each environment's current release. */
export class ReleaseStore {
  constructor(private readonly db: Kysely<Schema>) {}

  /** What was live in an environment, newest first. */
  async history(app: string, env: string, limit = 50): Promise<Release[]> {
    // Releases deployed to a side slot were never live: they are not history
    // (nor rollback targets) until a `promote` makes them current.
    const rows = await this.db
      .selectFrom("releases as r")
      .innerJoin("deploys as d", "d.id", "r.deploy_id")
      .selectAll("r")
      .where("r.app", "=", app)
      .where("r.env", "=", env)
      .where((eb) => eb.or([eb("d.slot", "is", null), eb("d.trigger", "=", "promote")]))
      .orderBy("r.id", "desc")
      .limit(limit)
      .execute();
    return rows.map(toRelease);
  }

  async get(id: number): Promise<Release> {
    const row = await this.db.selectFrom("releases").selectAll().where("id", "=", id).executeTakeFirst();
    if (!row) throw notFound(`release ${id}`);
    return toRelease(row);
  }

  async byDeployNumber(app: string, env: string, number: number): Promise<Release | undefined> {
    const row = await this.db
      .selectFrom("releases")
      .selectAll()
      .where("app", "=", app)
      .where("env", "=", env)
      .where("deploy_number", "=", number)
      .executeTakeFirst();
    return row ? toRelease(row) : undefined;
  }

  /** The newest release deployed to a slot of an environment (fleets). */
  async latestForSlot(app: string, env: string, slot: string): Promise<Release | undefined> {
    const row = await this.db
      .selectFrom("releases as r")
      .innerJoin("deploys as d", "d.id", "r.deploy_id")
      .selectAll("r")
      .where("r.app", "=", app)
      .where("r.env", "=", env)
      .where("d.slot", "=", slot)
      .orderBy("r.id", "desc")
      .limit(1)
      .executeTakeFirst();
    return row ? toRelease(row) : undefined;
  }

  async environment(app: string, env: string): Promise<EnvironmentState> {
    const row = await this.db
      .selectFrom("environments")
      .selectAll()
      .where("app", "=", app)
      .where("env", "=", env)
      .executeTakeFirst();
    return {
      app,
      env,
      currentReleaseId: row?.current_release_id ?? null,
      currentDeployId: row?.current_deploy_id ?? null,
    };
  }

  async current(app: string, env: string): Promise<Release | undefined> {
    const state = await this.environment(app, env);
    return state.currentReleaseId === null ? undefined : this.get(state.currentReleaseId);
  }
}
