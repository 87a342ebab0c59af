import type { Kysely, Selectable } from "kysely";
import { notFound } from "../domain/errors.js";
import type {
  NewNotificationEvent,
  NotificationEvent,
  NotifyEventKind,
} from "../domain/notification-event.js";
import { eventSubject } from "../domain/notification-event.js";
import type { Capabilities } from "./capabilities.js";
import { nowIso, toJson } from "./rows.js";
import type { NotifyDeliveriesTable, Schema } from "./schema.js";

/**
 * The notification outbox. Two steps, both durable:
 *
 * 1. `recordNotifyEvent` writes the event in the transaction of the state
 *    change it describes (a deploy finishing, a lock taken), so a crash can
 *    lose neither without the other.
 * 2. `fanOut` turns events into deliveries, one per subscribed channel, and
 *    deletes the events, in one transaction; `claim`/`complete` drain the
 *    deliveries under a lease, so a server that dies mid-send leaves its rows
 *    to be claimed again when the lease runs out (at least once).
 */
export async function recordNotifyEvent(db: Kysely<Schema>, event: NewNotificationEvent): Promise<void> {
  await db
    .insertInto("notify_events")
    .values({
      kind: event.kind,
      app: event.app,
      env: event.env,
      payload: toJson(event),
      created_at: event.at,
    })
    .execute();
}

export type DeliveryStatus = "pending" | "delivered" | "failed";

export interface DeliveryRecord {
  id: number;
  eventId: number;
  channel: string;
  kind: NotifyEventKind;
  app: string;
  env: string;
  deployId: number | null;
  subject: string;
  status: DeliveryStatus;
  attempts: number;
  nextAttemptAt: string | null;
  lastError: string | null;
  createdAt: string;
  updatedAt: string;
  deliveredAt: string | null;
  event: NotificationEvent;
}

export interface ClaimedDelivery extends DeliveryRecord {
  /** What the channel remembered for this subject (null: nothing). */
  state: Record<string, unknown> | null;
}

export type DeliveryUpdate =
  | { id: number; outcome: "delivered"; state?: Record<string, unknown>; detail?: string }
  | { id: number; outcome: "retry"; error: string; nextAttemptAt: string }
  | { id: number; outcome: "failed"; error: string }
  /** Not sent (an earlier delivery of its chain did not go through): back to pending, this attempt not counted. */
  | { id: number; outcome: "released" };

export interface DeliveryFilter {
  app: string;
  env?: string;
  channel?: string;
  status?: DeliveryStatus;
  kind?: string;
  deployId?: number;
  /** Only ids below this (pagination, newest first). */
  before?: number;
  limit: number;
}

/**
 * Which channels take an event; "later" leaves it for the next round (the
 * app's manifest is not loaded yet, so its subscriptions are not known).
 */
export type FanOutPlan = (event: NotificationEvent) => string[] | "later";

export class NotifyStore {
  constructor(
    private readonly db: Kysely<Schema>,
    private readonly caps: Capabilities,
  ) {}

  /** An event not tied to a transaction of the store (drift seen on hosts, a host depooled). */
  record(event: NewNotificationEvent): Promise<void> {
    return recordNotifyEvent(this.db, event);
  }

  /** Deliveries by channel and status (pending, failed), for the metrics. */
  async countsByChannel(): Promise<{ channel: string; status: string; n: number }[]> {
    const rows = await this.db
      .selectFrom("notify_deliveries")
      .select(({ fn }) => ["channel", "status", fn.countAll<number>().as("n")])
      .where("status", "in", ["pending", "failed"])
      .groupBy(["channel", "status"])
      .execute();
    return rows.map((r) => ({ channel: r.channel, status: r.status, n: Number(r.n) }));
  }

  /** Events not yet fanned out (tests, metrics). */
  async pendingEvents(): Promise<number> {
    const row = await this.db
      .selectFrom("notify_events")
      .select(({ fn }) => fn.countAll<number>().as("n"))
      .executeTakeFirstOrThrow();
    return Number(row.n);
  }

  /**
   * Turns the oldest events into deliveries. Events are taken in id order and
   * (with row locks) one fan-out at a time: two servers fanning out at once
   * must not give a later event of a deploy a lower delivery id.
   */
  fanOut(limit: number, plan: FanOutPlan): Promise<number> {
    return this.db.transaction().execute((trx) => this.fanOutIn(trx, limit, plan));
  }

  /**
   * A dispatcher's round in one transaction (one commit, not two): fan out
   * the oldest events, then claim what is due, the new deliveries included.
   */
  async fanOutAndClaim(
    plan: FanOutPlan,
    owner: string,
    leaseMs: number,
    limit: number,
  ): Promise<{ fanned: number; claimed: ClaimedDelivery[] }> {
    let fanned = 0;
    // Every server's dispatcher looks at least once a second and mostly finds nothing: one
    // read then, instead of BEGIN, two reads and COMMIT (the transaction locks what it reads).
    if (this.caps.statementRoundTrips && !(await this.anythingToDo())) return { fanned: 0, claimed: [] };
    const claimed = await this.db.transaction().execute(async (trx) => {
      fanned = await this.fanOutIn(trx, limit, plan);
      return this.claimIn(trx, owner, leaseMs, limit);
    });
    return { fanned, claimed: await this.withStates(claimed) };
  }

  /** Whether there is an event to fan out or a delivery that may be due (without locking anything). */
  private async anythingToDo(): Promise<boolean> {
    const now = nowIso();
    const row = await this.db
      .selectNoFrom((eb) => [
        eb
          .or([
            eb.exists(eb.selectFrom("notify_events").select("id")),
            eb.exists(
              eb
                .selectFrom("notify_deliveries")
                .select("id")
                .where("status", "=", "pending")
                .where("next_attempt_at", "<=", now)
                .where((w) => w.or([w("lease_until", "is", null), w("lease_until", "<", now)])),
            ),
          ])
          .as("due"),
      ])
      .executeTakeFirstOrThrow();
    return Boolean(row.due);
  }

  private async fanOutIn(trx: Kysely<Schema>, limit: number, plan: FanOutPlan): Promise<number> {
    let query = trx.selectFrom("notify_events").selectAll().orderBy("id", "asc").limit(limit);
    if (this.caps.rowLocking) query = query.forUpdate();
    const events = await query.execute();
    if (events.length === 0) return 0;
    const now = nowIso();
    const rows = [];
    const done: number[] = [];
    for (const row of events) {
      const event: NotificationEvent = { ...JSON.parse(row.payload), id: row.id };
      const channels = plan(event);
      // An event of an app not known yet holds back the later ones: order first.
      if (channels === "later") break;
      done.push(row.id);
      // One event's deliveries share its text (serialised once, not once per channel).
      const payload = channels.length > 0 ? toJson(event) : "";
      const subject = eventSubject(event);
      for (const channel of channels) {
        rows.push({
          event_id: row.id,
          channel,
          kind: event.kind,
          app: event.app,
          env: event.env,
          deploy_id: event.deploy?.id ?? null,
          subject,
          payload,
          status: "pending",
          attempts: 0,
          next_attempt_at: now,
          created_at: now,
          updated_at: now,
        });
      }
    }
    // Chunked: a statement has a bound-parameter limit.
    for (let i = 0; i < rows.length; i += 200) {
      await trx
        .insertInto("notify_deliveries")
        .values(rows.slice(i, i + 200))
        .execute();
    }
    if (done.length > 0) await trx.deleteFrom("notify_events").where("id", "in", done).execute();
    return done.length;
  }

  /**
   * Claims due deliveries under a lease: each chain starts at the oldest
   * pending delivery of its subject on its channel, and takes the pending
   * deliveries behind it too (in id order, up to `limit` in all), so a
   * deploy's queued, started and succeeded go out in one round, one after
   * the other, and a failing one holds back the rest. With row locks, heads
   * another server is claiming are skipped, and so are their followers: a
   * follower is only ever taken behind a head this claim holds.
   */
  async claim(owner: string, leaseMs: number, limit: number): Promise<ClaimedDelivery[]> {
    const claimed = await this.db.transaction().execute((trx) => this.claimIn(trx, owner, leaseMs, limit));
    return this.withStates(claimed);
  }

  private async claimIn(
    trx: Kysely<Schema>,
    owner: string,
    leaseMs: number,
    limit: number,
  ): Promise<Selectable<NotifyDeliveriesTable>[]> {
    const now = nowIso();
    let query = trx
      .selectFrom("notify_deliveries as d")
      .select(["d.id", "d.channel", "d.subject"])
      .where("d.status", "=", "pending")
      .where("d.next_attempt_at", "<=", now)
      .where((eb) => eb.or([eb("d.lease_until", "is", null), eb("d.lease_until", "<", now)]))
      .where(({ not, exists, selectFrom }) =>
        not(
          exists(
            selectFrom("notify_deliveries as e")
              .select("e.id")
              .whereRef("e.channel", "=", "d.channel")
              .whereRef("e.subject", "=", "d.subject")
              .where("e.status", "=", "pending")
              .whereRef("e.id", "<", "d.id"),
          ),
        ),
      )
      .orderBy("d.id", "asc")
      .limit(limit);
    if (this.caps.rowLocking) query = query.forUpdate().skipLocked();
    const heads = await query.execute();
    if (heads.length === 0) return [];
    const ids = heads.map((h) => h.id);
    ids.push(...(await this.followers(trx, heads, now, limit - heads.length)));
    const rows = [];
    // Chunked: a statement has a bound-parameter limit.
    for (let i = 0; i < ids.length; i += 500) {
      rows.push(
        ...(await trx
          .updateTable("notify_deliveries")
          .set((eb) => ({
            lease_owner: owner,
            lease_until: new Date(Date.now() + leaseMs).toISOString(),
            attempts: eb("attempts", "+", 1),
            updated_at: now,
          }))
          .where("id", "in", ids.slice(i, i + 500))
          .returningAll()
          .execute()),
      );
    }
    return rows;
  }

  /** Claimed rows in id order, each with what its channel remembered for its subject. */
  private async withStates(claimed: Selectable<NotifyDeliveriesTable>[]): Promise<ClaimedDelivery[]> {
    if (claimed.length === 0) return [];
    claimed.sort((a, b) => a.id - b.id);
    const states = await this.db
      .selectFrom("notify_channel_state")
      .selectAll()
      .where("subject", "in", [...new Set(claimed.map((r) => r.subject))])
      .execute();
    const byKey = new Map(states.map((s) => [`${s.channel}\n${s.subject}`, JSON.parse(s.state)]));
    // An event's deliveries (one per channel) share one parsed event: it is only read from here on.
    const events = new Map<number, NotificationEvent>();
    return claimed.map((row) => {
      let event = events.get(row.event_id);
      if (!event) {
        event = JSON.parse(row.payload) as NotificationEvent;
        events.set(row.event_id, event);
      }
      return { ...toRecord(row, event), state: byKey.get(`${row.channel}\n${row.subject}`) ?? null };
    });
  }

  /**
   * The pending deliveries behind claimed heads, each chain cut at its first
   * delivery that is not claimable now (leased, or waiting for a retry): what
   * is behind such a one must wait for it.
   */
  private async followers(
    trx: Kysely<Schema>,
    heads: { id: number; channel: string; subject: string }[],
    now: string,
    room: number,
  ): Promise<number[]> {
    if (room <= 0) return [];
    const found: number[] = [];
    // Chunked: three bound parameters per head.
    for (let i = 0; i < heads.length && found.length < room; i += 100) {
      const chunk = heads.slice(i, i + 100);
      const rows = await trx
        .selectFrom("notify_deliveries")
        .select(["id", "channel", "subject", "next_attempt_at", "lease_until"])
        .where("status", "=", "pending")
        .where((eb) =>
          eb.or(
            chunk.map((h) =>
              eb.and([eb("channel", "=", h.channel), eb("subject", "=", h.subject), eb("id", ">", h.id)]),
            ),
          ),
        )
        .orderBy("id", "asc")
        .execute();
      const cut = new Set<string>();
      for (const row of rows) {
        const key = `${row.channel}\n${row.subject}`;
        if (cut.has(key)) continue;
        const leased = row.lease_until !== null && row.lease_until >= now;
        if (leased || row.next_attempt_at > now || found.length >= room) {
          cut.add(key);
          continue;
        }
        found.push(row.id);
      }
    }
    return found;
  }

  /** Records how claimed deliveries went, all in one transaction (draining fast means few commits). */
  async complete(owner: string, updates: DeliveryUpdate[]): Promise<void> {
    if (updates.length === 0) return;
    await this.db.transaction().execute(async (trx) => {
      const now = nowIso();
      // The common case, delivered with nothing to remember, is one statement for the whole round.
      const plain = updates
        .filter((u) => u.outcome === "delivered" && u.state === undefined)
        .map((u) => u.id);
      for (let i = 0; i < plain.length; i += 500) {
        await trx
          .updateTable("notify_deliveries")
          .set({
            status: "delivered",
            delivered_at: now,
            updated_at: now,
            lease_owner: null,
            lease_until: null,
          })
          .where("id", "in", plain.slice(i, i + 500))
          .where("lease_owner", "=", owner)
          .execute();
      }
      for (const update of updates) {
        if (update.outcome === "delivered" && update.state === undefined) continue;
        const base = trx
          .updateTable("notify_deliveries")
          .where("id", "=", update.id)
          .where("lease_owner", "=", owner);
        if (update.outcome === "delivered") {
          const row = await base
            .set({
              status: "delivered",
              delivered_at: now,
              updated_at: now,
              lease_owner: null,
              lease_until: null,
            })
            .returning(["channel", "subject"])
            .executeTakeFirst();
          if (row && update.state !== undefined) {
            await trx
              .insertInto("notify_channel_state")
              .values({
                channel: row.channel,
                subject: row.subject,
                state: toJson(update.state),
                updated_at: now,
              })
              .onConflict((oc) =>
                oc
                  .columns(["channel", "subject"])
                  .doUpdateSet({ state: toJson(update.state), updated_at: now }),
              )
              .execute();
          }
        } else if (update.outcome === "released") {
          await base
            .set((eb) => ({
              attempts: eb("attempts", "-", 1),
              updated_at: now,
              lease_owner: null,
              lease_until: null,
            }))
            .execute();
        } else if (update.outcome === "retry") {
          await base
            .set({
              next_attempt_at: update.nextAttemptAt,
              last_error: update.error,
              updated_at: now,
              lease_owner: null,
              lease_until: null,
            })
            .execute();
        } else {
          await base
            .set({
              status: "failed",
              last_error: update.error,
              updated_at: now,
              lease_owner: null,
              lease_until: null,
            })
            .execute();
        }
      }
    });
  }

  async list(filter: DeliveryFilter): Promise<DeliveryRecord[]> {
    let query = this.db
      .selectFrom("notify_deliveries")
      .selectAll()
      .where("app", "=", filter.app)
      .orderBy("id", "desc")
      .limit(filter.limit);
    if (filter.env !== undefined) query = query.where("env", "=", filter.env);
    if (filter.channel !== undefined) query = query.where("channel", "=", filter.channel);
    if (filter.status !== undefined) query = query.where("status", "=", filter.status);
    if (filter.kind !== undefined) query = query.where("kind", "=", filter.kind);
    if (filter.deployId !== undefined) query = query.where("deploy_id", "=", filter.deployId);
    if (filter.before !== undefined) query = query.where("id", "<", filter.before);
    return (await query.execute()).map((row) => toRecord(row));
  }

  async get(id: number): Promise<DeliveryRecord> {
    const row = await this.db
      .selectFrom("notify_deliveries")
      .selectAll()
      .where("id", "=", id)
      .executeTakeFirst();
    if (!row) throw notFound(`delivery ${id}`, { delivery: id });
    return toRecord(row);
  }

  /** Removes finished deliveries older than `before` (ISO); pending ones stay whatever their age. */
  async prune(before: string): Promise<number> {
    const result = await this.db
      .deleteFrom("notify_deliveries")
      .where("status", "in", ["delivered", "failed"])
      .where("updated_at", "<", before)
      .executeTakeFirst();
    return Number(result.numDeletedRows);
  }
}

function toRecord(
  row: Selectable<NotifyDeliveriesTable>,
  event = JSON.parse(row.payload) as NotificationEvent,
): DeliveryRecord {
  return {
    id: row.id,
    eventId: row.event_id,
    channel: row.channel,
    kind: row.kind as NotifyEventKind,
    app: row.app,
    env: row.env,
    deployId: row.deploy_id,
    subject: row.subject,
    status: row.status as DeliveryStatus,
    attempts: row.attempts,
    nextAttemptAt: row.status === "pending" ? row.next_attempt_at : null,
    lastError: row.last_error,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    deliveredAt: row.delivered_at,
    event,
  };
}
