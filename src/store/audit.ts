import type { Kysely } from "kysely";
import type { AuditActor, AuditSource } from "../domain/audit.js";
import { fromJson, nowIso, toJson } from "./rows.js";
import type { Schema } from "./schema.js";

export interface AuditEvent {
  id: number;
  at: string;
  /** The token's name (or the server's own name for what it does by itself). */
  actor: string;
  /** The token's id; null for the server itself and for rows written before migration 0012. */
  actorId: number | null;
  role: string | null;
  source: AuditSource | null;
  action: string;
  app: string | null;
  env: string | null;
  /** What was acted on: a deploy's label (`shop/production#42`), a token's or host's name. */
  target: string | null;
  details: Record<string, unknown>;
}

/** A new event. `actor` may be a bare name where the caller knows nothing more (tests, older callers). */
export interface NewAuditEvent {
  actor: AuditActor | string;
  action: string;
  app: string | null;
  env: string | null;
  target?: string | null;
  /** Never secrets: only names, ids, refs, reasons. */
  details: Record<string, unknown>;
}

export interface AuditFilter {
  app?: string;
  env?: string;
  action?: string;
  actor?: string;
  source?: AuditSource;
  /** ISO times: at or after `since`, before `until`. */
  since?: string;
  until?: string;
  /** Only events of these apps (limited tokens); server-wide events (no app) are left out. */
  apps?: string[];
  /** Only ids below this (pagination, newest first). */
  before?: number;
  limit: number;
}

/** The name of an actor given either way. */
export function actorName(actor: AuditActor | string): string {
  return typeof actor === "string" ? actor : actor.name;
}

/**
 * Writes one event with `db`, which may be a transaction: callers that change
 * something record it in the same transaction, so the change and its record
 * stand or fall together.
 */
export async function insertAudit(
  db: Kysely<Schema>,
  event: NewAuditEvent,
  at: string = nowIso(),
): Promise<void> {
  const actor = typeof event.actor === "string" ? undefined : event.actor;
  await db
    .insertInto("audit_events")
    .values({
      at,
      actor: actorName(event.actor),
      actor_id: actor?.tokenId ?? null,
      role: actor?.role ?? null,
      source: actor?.source ?? null,
      action: event.action,
      app: event.app,
      env: event.env,
      target: event.target ?? null,
      details: toJson(event.details),
    })
    .execute();
}

/** Who did what, for the operator's "who put it there". */
export class AuditStore {
  constructor(private readonly db: Kysely<Schema>) {}

  async record(event: NewAuditEvent): Promise<void> {
    await insertAudit(this.db, event);
  }

  async list(filter: AuditFilter): Promise<AuditEvent[]> {
    let query = this.db.selectFrom("audit_events").selectAll().orderBy("id", "desc").limit(filter.limit);
    if (filter.app !== undefined) query = query.where("app", "=", filter.app);
    if (filter.env !== undefined) query = query.where("env", "=", filter.env);
    if (filter.action !== undefined) query = query.where("action", "=", filter.action);
    if (filter.actor !== undefined) query = query.where("actor", "=", filter.actor);
    if (filter.source !== undefined) query = query.where("source", "=", filter.source);
    if (filter.since !== undefined) query = query.where("at", ">=", filter.since);
    if (filter.until !== undefined) query = query.where("at", "<", filter.until);
    if (filter.before !== undefined) query = query.where("id", "<", filter.before);
    if (filter.apps !== undefined) {
      if (filter.apps.length === 0) return [];
      query = query.where("app", "in", filter.apps);
    }
    return (await query.execute()).map((r) => ({
      id: r.id,
      at: r.at,
      actor: r.actor,
      actorId: r.actor_id,
      role: r.role,
      source: r.source as AuditSource | null,
      action: r.action,
      app: r.app,
      env: r.env,
      target: r.target,
      details: fromJson(r.details),
    }));
  }
}
