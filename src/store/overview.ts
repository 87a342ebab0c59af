import type { Kysely } from "kysely";
import type { Deploy } from "../domain/deploy.js";
import type { Lock } from "../domain/lock.js";
import type { Release } from "../domain/release.js";
import { toDeploy, toLock, toRelease } from "./rows.js";
import type { Schema } from "./schema.js";

/** The state of one environment as status pages show it. */
export interface EnvironmentOverview {
  lock: Lock | undefined;
  current: { release: Release; sha: string } | undefined;
  active: Deploy | undefined;
  queued: number;
}

export const overviewKey = (app: string, env: string): string => `${app}/${env}`;

/**
 * Status of many environments in three queries, whatever their number: the
 * read path behind `turnout status` and `GET /api/v1/apps`, which must stay
 * cheap (thousands of requests a second) as apps are added.
 */
export class OverviewStore {
  constructor(private readonly db: Kysely<Schema>) {}

  async environments(apps: string[]): Promise<Map<string, EnvironmentOverview>> {
    const out = new Map<string, EnvironmentOverview>();
    if (apps.length === 0) return out;
    const entry = (app: string, env: string): EnvironmentOverview => {
      const key = overviewKey(app, env);
      let value = out.get(key);
      if (!value) {
        value = { lock: undefined, current: undefined, active: undefined, queued: 0 };
        out.set(key, value);
      }
      return value;
    };
    const [locks, currents, pending] = await Promise.all([
      this.db.selectFrom("locks").selectAll().where("app", "in", apps).execute(),
      this.db
        .selectFrom("environments as e")
        .innerJoin("releases as r", "r.id", "e.current_release_id")
        .innerJoin("deploys as d", "d.id", "r.deploy_id")
        .selectAll("r")
        .select("d.sha as deploy_sha")
        .where("e.app", "in", apps)
        .execute(),
      // Active and queued deploys in one read: queues are short, and counting
      // them here saves a query on every status request.
      this.db
        .selectFrom("deploys")
        .selectAll()
        .where("status", "in", ["queued", "waiting", "running"])
        .where("app", "in", apps)
        .execute(),
    ]);
    for (const row of locks) entry(row.app, row.env).lock = toLock(row);
    for (const row of currents) {
      const { deploy_sha, ...release } = row;
      entry(row.app, row.env).current = { release: toRelease(release), sha: deploy_sha };
    }
    for (const row of pending) {
      const state = entry(row.app, row.env);
      if (row.status === "queued") state.queued++;
      else state.active = toDeploy(row);
    }
    return out;
  }
}
