import type { Kysely } from "kysely";
import type { AuditActor } from "../domain/audit.js";
import { TurnoutError } from "../domain/errors.js";
import type { Lock } from "../domain/lock.js";
import { lockEvent } from "../domain/notification-event.js";
import { actorName, insertAudit } from "./audit.js";
import { recordNotifyEvent } from "./notify-outbox.js";
import { nowIso, toLock } from "./rows.js";
import type { Schema } from "./schema.js";

/** Environment locks. Locking and unlocking are audit events, written in the same transaction. */
export class LockStore {
  constructor(private readonly db: Kysely<Schema>) {}

  async get(app: string, env: string): Promise<Lock | undefined> {
    const row = await this.db
      .selectFrom("locks")
      .selectAll()
      .where("app", "=", app)
      .where("env", "=", env)
      .executeTakeFirst();
    return row ? toLock(row) : undefined;
  }

  async list(): Promise<Lock[]> {
    return (await this.db.selectFrom("locks").selectAll().execute()).map(toLock);
  }

  /**
   * Locks an environment. Locking it again by the same person updates the
   * reason; someone else's lock is not silently taken over.
   */
  async lock(app: string, env: string, actor: AuditActor | string, reason: string): Promise<Lock> {
    const by = actorName(actor);
    return this.db.transaction().execute(async (trx) => {
      const existing = await trx
        .selectFrom("locks")
        .selectAll()
        .where("app", "=", app)
        .where("env", "=", env)
        .executeTakeFirst();
      if (existing && existing.locked_by !== by) {
        throw new TurnoutError(
          "E_LOCKED",
          `${app}/${env} is already locked by ${existing.locked_by}: ${existing.reason}`,
          {
            lockedBy: existing.locked_by,
            reason: existing.reason,
          },
        );
      }
      const now = nowIso();
      if (existing) {
        await trx
          .updateTable("locks")
          .set({ reason })
          .where("app", "=", app)
          .where("env", "=", env)
          .execute();
      } else {
        await trx.insertInto("locks").values({ app, env, locked_by: by, reason, created_at: now }).execute();
      }
      await insertAudit(
        trx,
        { actor, action: "lock", app, env, target: `${app}/${env}`, details: { reason } },
        now,
      );
      const lock = { app, env, lockedBy: by, reason, createdAt: existing?.created_at ?? now };
      // Told in the same transaction (the outbox); a changed reason is not a new lock.
      if (!existing) await recordNotifyEvent(trx, lockEvent(lock, "lock.locked", by, now));
      return lock;
    });
  }

  /** Removes a lock; returns the lock that was removed, or undefined if there was none. */
  async unlock(app: string, env: string, actor: AuditActor | string): Promise<Lock | undefined> {
    return this.db.transaction().execute(async (trx) => {
      const existing = await trx
        .selectFrom("locks")
        .selectAll()
        .where("app", "=", app)
        .where("env", "=", env)
        .executeTakeFirst();
      if (!existing) return undefined;
      await trx.deleteFrom("locks").where("app", "=", app).where("env", "=", env).execute();
      await insertAudit(trx, {
        actor,
        action: "unlock",
        app,
        env,
        target: `${app}/${env}`,
        details: { lockedBy: existing.locked_by, reason: existing.reason },
      });
      const lock = toLock(existing);
      await recordNotifyEvent(trx, lockEvent(lock, "lock.unlocked", actorName(actor), nowIso()));
      return lock;
    });
  }
}
