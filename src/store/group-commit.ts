import type { Kysely } from "kysely";
import type { Capabilities } from "./capabilities.js";
import type { Schema } from "./schema.js";

type Write = (db: Kysely<Schema>) => Promise<void>;

interface Pending {
  write: Write;
  statements: number;
  resolve(): void;
  reject(error: Error): void;
}

/**
 * Group commit across stores (SQLite): the writes asked for in the same turn
 * of the event loop — a fleet batch's step updates, the same hosts'
 * inventory reports and last-seen times, their targets — are made in one
 * transaction, in the order asked. With `synchronous = FULL` every commit is
 * a flush, made in the event loop; one per store and turn (and one per
 * last-seen write) was most of a one-file deploy's database time per host
 * (docs/benchmarks.md, "Control plane at scale").
 *
 * Each promise settles once its write is durable. A turn with a single
 * one-statement write runs it without BEGIN and COMMIT (one statement is
 * atomic by itself). When the group's transaction fails, each write of it
 * is tried again in a transaction of its own, so that one bad write fails
 * only its own caller, not its neighbours of that turn.
 *
 * Not used with PostgreSQL, where each statement is a round trip and the
 * stores group by statement instead (arrays: FleetStore.updateMany).
 */
export class GroupCommit {
  private pending: Pending[] = [];
  /** Transactions committed and writes in them, for tests and benchmarks. */
  readonly stats = { groups: 0, writes: 0 };

  constructor(private readonly db: Kysely<Schema>) {}

  /** Runs `write` (making `statements` statements) with this turn's other writes. */
  run(write: Write, statements = 1): Promise<void> {
    return new Promise((resolve, reject) => {
      this.pending.push({ write, statements, resolve, reject });
      if (this.pending.length === 1) setImmediate(() => void this.flush());
    });
  }

  private async flush(): Promise<void> {
    const batch = this.pending.splice(0);
    this.stats.groups++;
    this.stats.writes += batch.length;
    if (batch.length === 1 && batch[0]!.statements === 1) {
      const only = batch[0]!;
      await only.write(this.db).then(only.resolve, only.reject);
      return;
    }
    try {
      await this.db.transaction().execute(async (trx) => {
        for (const p of batch) await p.write(trx);
      });
    } catch {
      // Nothing of the group was written: each write alone, so the one that fails fails by itself.
      for (const p of batch) {
        await this.db
          .transaction()
          .execute((trx) => p.write(trx))
          .then(p.resolve, p.reject);
      }
      return;
    }
    for (const p of batch) p.resolve();
  }
}

/** A group commit where the dialect wants one (SQLite), else none. */
export function groupCommitFor(db: Kysely<Schema>, caps: Capabilities): GroupCommit | undefined {
  return caps.dialect === "sqlite" ? new GroupCommit(db) : undefined;
}
