import { randomUUID } from "node:crypto";
import { type Kysely, sql, type Transaction } from "kysely";
import { TurnoutError } from "../domain/errors.js";
import type { Capabilities } from "./capabilities.js";
import { nowIso } from "./rows.js";
import type { Schema } from "./schema.js";

/**
 * The log of a shared hosted repository (migration 0019): one entry per
 * accepted push, numbered from 1 without gaps, each with every ref after the
 * push and a git bundle of what it added. Only pushes write it, one at a
 * time per repository: `locked` holds the repository's row (`FOR UPDATE`)
 * for the whole push, so the log is the order in which pushes happened.
 * Readers (servers catching up) never lock anything.
 */
export interface HostedLogHead {
  /** Changes when the log is started again (a new database): copies of another log are not current. */
  logId: string;
  /** The last entry's number (0: no push yet). */
  head: number;
}

export interface HostedLogEntry {
  seq: number;
  /** Its bundle needs no earlier entry (the first push, or a compaction). */
  full: boolean;
  /** Every ref after this push: refname → object id. */
  refs: Record<string, string>;
  /** Bytes of its bundle (0: none, the push added no objects). */
  bytes: number;
}

export interface NewHostedLogEntry {
  refs: Record<string, string>;
  bundle: Buffer | null;
  full: boolean;
  pushedBy: string;
}

/** Reading entries and their bundles. */
export interface HostedLogReader {
  entries(repo: string, after: number): Promise<HostedLogEntry[]>;
  bundle(repo: string, seq: number): Promise<Buffer | null | undefined>;
}

/** The log while a push holds it; its reads go through the push's own transaction (no second connection). */
export interface LockedHostedLog extends HostedLogReader {
  readonly logId: string;
  readonly head: number;
  /** Adds the next entry; returns its number. Committed when the `locked` callback returns. */
  append(entry: NewHostedLogEntry): Promise<number>;
  /**
   * Compaction: the head entry's bundle becomes `fullBundle` (everything
   * its refs reach) and every earlier entry goes; returns how many went.
   */
  compact(fullBundle: Buffer): Promise<number>;
}

/** PostgreSQL's "lock_not_available" (lock_timeout ran out). */
const LOCK_NOT_AVAILABLE = "55P03";

export class HostedRepoLog {
  constructor(
    private readonly db: Kysely<Schema>,
    private readonly caps: Capabilities,
  ) {}

  async head(repo: string): Promise<HostedLogHead | undefined> {
    const row = await this.db
      .selectFrom("hosted_repos")
      .select(["log_id", "head"])
      .where("repo", "=", repo)
      .executeTakeFirst();
    return row ? { logId: row.log_id, head: Number(row.head) } : undefined;
  }

  /** Entries after `after`, oldest first, without their bundles. */
  entries(repo: string, after: number): Promise<HostedLogEntry[]> {
    return readEntries(this.db, repo, after);
  }

  /** An entry's bundle: null when it has none, undefined when the entry is gone (compacted meanwhile). */
  bundle(repo: string, seq: number): Promise<Buffer | null | undefined> {
    return readBundle(this.db, repo, seq);
  }

  /** How many entries the log keeps, and the first of them (compaction's measure). */
  async size(repo: string): Promise<{ entries: number; bytes: number }> {
    const row = await this.db
      .selectFrom("hosted_repo_pushes")
      .select((eb) => [eb.fn.countAll<number>().as("entries"), eb.fn.sum<number>("bytes").as("bytes")])
      .where("repo", "=", repo)
      .executeTakeFirst();
    return { entries: Number(row?.entries ?? 0), bytes: Number(row?.bytes ?? 0) };
  }

  /**
   * Runs `fn` holding the repository's row lock, in one transaction: what it
   * appends is committed when it returns, and nothing if it throws. Waits at
   * most `waitMs` for another server's push (E_UNAVAILABLE after that).
   */
  async locked<T>(repo: string, waitMs: number, fn: (log: LockedHostedLog) => Promise<T>): Promise<T> {
    try {
      return await this.db.transaction().execute(async (trx) => {
        if (this.caps.rowLocking) {
          await sql`SELECT set_config('lock_timeout', ${`${Math.max(1, Math.round(waitMs))}ms`}, true)`.execute(
            trx,
          );
        }
        const now = nowIso();
        await trx
          .insertInto("hosted_repos")
          .values({ repo, log_id: randomUUID(), head: 0, updated_at: now })
          .onConflict((oc) => oc.column("repo").doNothing())
          .execute();
        let query = trx.selectFrom("hosted_repos").select(["log_id", "head"]).where("repo", "=", repo);
        if (this.caps.rowLocking) query = query.forUpdate();
        const row = await query.executeTakeFirstOrThrow();
        let head = Number(row.head);
        const log: LockedHostedLog = {
          logId: row.log_id,
          get head() {
            return head;
          },
          append: async (entry) => {
            head = await appendEntry(trx, repo, head + 1, entry);
            return head;
          },
          compact: (fullBundle) => compactTo(trx, repo, head, fullBundle),
          entries: (r, after) => readEntries(trx, r, after),
          bundle: (r, seq) => readBundle(trx, r, seq),
        };
        return fn(log);
      });
    } catch (error) {
      if ((error as { code?: unknown }).code === LOCK_NOT_AVAILABLE) {
        throw new TurnoutError(
          "E_UNAVAILABLE",
          `another push to ${repo} is still running on another server; try again`,
          { repo },
        );
      }
      throw error;
    }
  }
}

async function appendEntry(
  trx: Transaction<Schema>,
  repo: string,
  seq: number,
  entry: NewHostedLogEntry,
): Promise<number> {
  const now = nowIso();
  await trx
    .insertInto("hosted_repo_pushes")
    .values({
      repo,
      seq,
      full: entry.full ? 1 : 0,
      refs: JSON.stringify(entry.refs),
      bundle: entry.bundle,
      bytes: entry.bundle?.length ?? 0,
      pushed_by: entry.pushedBy,
      created_at: now,
    })
    .execute();
  await trx
    .updateTable("hosted_repos")
    .set({ head: seq, updated_at: now })
    .where("repo", "=", repo)
    .execute();
  return seq;
}

async function compactTo(
  trx: Transaction<Schema>,
  repo: string,
  seq: number,
  fullBundle: Buffer,
): Promise<number> {
  if (seq === 0) return 0;
  await trx
    .updateTable("hosted_repo_pushes")
    .set({ full: 1, bundle: fullBundle, bytes: fullBundle.length })
    .where("repo", "=", repo)
    .where("seq", "=", seq)
    .execute();
  const removed = await trx
    .deleteFrom("hosted_repo_pushes")
    .where("repo", "=", repo)
    .where("seq", "<", seq)
    .executeTakeFirst();
  return Number(removed.numDeletedRows);
}

async function readEntries(db: Kysely<Schema>, repo: string, after: number): Promise<HostedLogEntry[]> {
  const rows = await db
    .selectFrom("hosted_repo_pushes")
    .select(["seq", "full", "refs", "bytes"])
    .where("repo", "=", repo)
    .where("seq", ">", after)
    .orderBy("seq", "asc")
    .execute();
  return rows.map((r) => ({
    seq: Number(r.seq),
    full: Number(r.full) === 1,
    refs: JSON.parse(r.refs) as Record<string, string>,
    bytes: Number(r.bytes),
  }));
}

async function readBundle(db: Kysely<Schema>, repo: string, seq: number): Promise<Buffer | null | undefined> {
  const row = await db
    .selectFrom("hosted_repo_pushes")
    .select("bundle")
    .where("repo", "=", repo)
    .where("seq", "=", seq)
    .executeTakeFirst();
  if (!row) return undefined;
  return row.bundle === null ? null : Buffer.from(row.bundle);
}
