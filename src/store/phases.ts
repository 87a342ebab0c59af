import type { Kysely } from "kysely";
import type { PhaseEntry } from "../domain/dashboard.js";
import { nowIso } from "./rows.js";
import type { Schema } from "./schema.js";

export type { PhaseEntry } from "../domain/dashboard.js";

/**
 * Each deploy's phase transitions, in order (table deploy_phases), written
 * where the worker sets a phase: the deploy page's timeline and its
 * durations come from here, not from the log.
 */
export class PhaseStore {
  constructor(private readonly db: Kysely<Schema>) {}

  async record(deployId: number, phase: string, status: string, at: string = nowIso()): Promise<void> {
    await this.db.insertInto("deploy_phases").values({ deploy_id: deployId, phase, status, at }).execute();
  }

  async list(deployId: number): Promise<PhaseEntry[]> {
    const rows = await this.db
      .selectFrom("deploy_phases")
      .select(["phase", "status", "at"])
      .where("deploy_id", "=", deployId)
      .orderBy("id")
      .execute();
    return rows;
  }
}
