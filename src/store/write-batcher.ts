/**
 * Writes of one kind that go to the database together (PostgreSQL, where
 * each statement is a round trip: docs/benchmarks.md, "Control plane at
 * scale"). What is asked for in the same turn of the event loop is one
 * group; and while a group is being written, whatever is asked for meanwhile
 * waits and becomes the next group, written as soon as the first is done.
 * The hosts of a fleet batch answer a few milliseconds apart, each in a turn
 * of its own, so grouping by turn alone wrote most of them one by one;
 * grouping what arrives during the previous statement's round trip adds no
 * wait when the database is idle and lets a group grow with the load.
 *
 * One group at a time per batcher also keeps the writes of one kind in the
 * order asked (two groups never race on two pool connections). Each promise
 * settles once its group is written; a failed group fails every write of it
 * (none was written, `write` being one statement or one transaction).
 *
 * Used by the stores that group by statement on PostgreSQL (FleetStore,
 * HostStore) and by the routing of host calls (HostCallRouter); SQLite
 * groups by transaction instead (GroupCommit).
 *
 * `lingerMs`: a write that may wait (a host's last-seen time, good to 15 s)
 * waits that long for others before its group goes, so writes that arrive
 * spread out (heartbeats, a few a second per server) still share one
 * statement.
 */
export class WriteBatcher<T> {
  private queue: { item: T; resolve(): void; reject(error: Error): void }[] = [];
  private writing = false;
  /** Groups written and items in them, for tests and benchmarks. */
  readonly stats = { groups: 0, items: 0 };

  constructor(
    private readonly write: (items: T[]) => Promise<void>,
    private readonly options: { lingerMs?: number } = {},
  ) {}

  add(item: T): Promise<void> {
    return new Promise((resolve, reject) => {
      this.queue.push({ item, resolve, reject });
      if (this.queue.length === 1 && !this.writing) {
        const linger = this.options.lingerMs ?? 0;
        if (linger > 0) setTimeout(() => void this.drain(), linger);
        else setImmediate(() => void this.drain());
      }
    });
  }

  private async drain(): Promise<void> {
    if (this.writing) return;
    this.writing = true;
    try {
      while (this.queue.length > 0) {
        const group = this.queue.splice(0);
        this.stats.groups++;
        this.stats.items += group.length;
        try {
          await this.write(group.map((g) => g.item));
        } catch (error) {
          for (const g of group) g.reject(error as Error);
          continue;
        }
        for (const g of group) g.resolve();
      }
    } finally {
      this.writing = false;
    }
  }
}
