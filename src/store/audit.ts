import type { Kysely } from "kysely";
import { fromJson, nowIso, toJson } from "./rows.js";
import type { Schema } from "./schema.js";

export interface AuditEvent {
  id: number;
  at: string;
  actor: string;
  action: string;
  app: string | null;
  env: string | null;
  details: Record<string, unknown>;
}

/** Who did what, for the operator's "who put it there". */
export class AuditStore {
  constructor(private readonly db: Kysely<Schema>) {}

  async record(event: Omit<AuditEvent, "id" | "at">): Promise<void> {
    await this.db
      .insertInto("audit_events")
      .values({
        at: nowIso(),
        actor: event.actor,
        action: event.action,
        app: event.app,
        env: event.env,
        details: toJson(event.details),
      })
      .execute();
  }

  async list(filter: { app?: string; env?: string; limit: number }): Promise<AuditEvent[]> {
    let query = this.db.selectFrom("audit_events").selectAll().orderBy("id", "desc").limit(filter.limit);
    if (filter.app) query = query.where("app", "=", filter.app);
    if (filter.env) query = query.where("env", "=", filter.env);
    return (await query.execute()).map((r) => ({ ...r, details: fromJson(r.details) }));
  }
}
