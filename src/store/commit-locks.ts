import type { Kysely, Selectable } from "kysely";
import type { CommitLock } from "../domain/deploy-guards.js";
import { TurnoutError } from "../domain/errors.js";
import { insertAudit } from "./audit.js";
import type { Capabilities } from "./capabilities.js";
import { nowIso } from "./rows.js";
import type { CommitLocksTable, Schema } from "./schema.js";

/**
 * Commit locks (migration 0013). Locking and unlocking are audit events,
 * written in the same transaction; an unlocked lock stays as history.
 */
export class CommitLockStore {
  constructor(
    private readonly db: Kysely<Schema>,
    private readonly caps: Capabilities,
  ) {}

  /** The locks in force on an app's commits, oldest first. */
  async inForce(app: string): Promise<CommitLock[]> {
    const rows = await this.db
      .selectFrom("commit_locks")
      .selectAll()
      .where("app", "=", app)
      .where("unlocked_at", "is", null)
      .orderBy("id", "asc")
      .execute();
    return rows.map(toCommitLock);
  }

  /** Locks in force, and with `history` the unlocked ones too, newest first. */
  async list(app: string, options: { history?: boolean; limit?: number } = {}): Promise<CommitLock[]> {
    let query = this.db
      .selectFrom("commit_locks")
      .selectAll()
      .where("app", "=", app)
      .orderBy("id", "desc")
      .limit(options.limit ?? 200);
    if (!options.history) query = query.where("unlocked_at", "is", null);
    return (await query.execute()).map(toCommitLock);
  }

  /**
   * Locks a commit. Locking it again by the same person updates the reason;
   * someone else's lock is not silently taken over.
   */
  async lock(app: string, sha: string, by: string, reason: string): Promise<CommitLock> {
    try {
      return await this.db.transaction().execute(async (trx) => {
        const existing = await trx
          .selectFrom("commit_locks")
          .selectAll()
          .where("app", "=", app)
          .where("sha", "=", sha)
          .where("unlocked_at", "is", null)
          .executeTakeFirst();
        if (existing && existing.locked_by !== by) throw alreadyLocked(toCommitLock(existing));
        const now = nowIso();
        let row: Selectable<CommitLocksTable>;
        if (existing) {
          row = await trx
            .updateTable("commit_locks")
            .set({ reason })
            .where("id", "=", existing.id)
            .returningAll()
            .executeTakeFirstOrThrow();
        } else {
          row = await trx
            .insertInto("commit_locks")
            .values({ app, sha, reason, locked_by: by, locked_at: now, unlocked_at: null, unlocked_by: null })
            .returningAll()
            .executeTakeFirstOrThrow();
        }
        await insertAudit(
          trx,
          { actor: by, action: "commit.lock", app, env: null, details: { sha, reason } },
          now,
        );
        return toCommitLock(row);
      });
    } catch (error) {
      // Two people locking the same commit at once: the schema lets one in.
      if (this.caps.isUniqueViolation(error)) {
        const winner = (await this.inForce(app)).find((l) => l.sha === sha);
        if (winner && winner.lockedBy !== by) throw alreadyLocked(winner);
        if (winner) return winner;
      }
      throw error;
    }
  }

  /** Lifts the lock on a commit; returns it, or undefined if none was in force. */
  async unlock(app: string, sha: string, by: string): Promise<CommitLock | undefined> {
    return this.db.transaction().execute(async (trx) => {
      const now = nowIso();
      const row = await trx
        .updateTable("commit_locks")
        .set({ unlocked_at: now, unlocked_by: by })
        .where("app", "=", app)
        .where("sha", "=", sha)
        .where("unlocked_at", "is", null)
        .returningAll()
        .executeTakeFirst();
      if (!row) return undefined;
      await insertAudit(
        trx,
        {
          actor: by,
          action: "commit.unlock",
          app,
          env: null,
          details: { sha, lockedBy: row.locked_by, reason: row.reason },
        },
        now,
      );
      return toCommitLock(row);
    });
  }
}

function alreadyLocked(lock: CommitLock): TurnoutError {
  return new TurnoutError(
    "E_CONFLICT",
    `commit ${lock.sha.slice(0, 12)} of ${lock.app} is already locked by ${lock.lockedBy}: ${lock.reason}`,
    { sha: lock.sha, lockedBy: lock.lockedBy, reason: lock.reason },
  );
}

function toCommitLock(row: Selectable<CommitLocksTable>): CommitLock {
  return {
    app: row.app,
    sha: row.sha,
    reason: row.reason,
    lockedBy: row.locked_by,
    lockedAt: row.locked_at,
    unlockedAt: row.unlocked_at,
    unlockedBy: row.unlocked_by,
  };
}
