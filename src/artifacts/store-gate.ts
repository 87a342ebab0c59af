import { AsyncLocalStorage } from "node:async_hooks";

/**
 * Shared sections (writing artifacts and recording who uses them) against
 * one exclusive section (the garbage collector's re-check and removal).
 *
 * Whatever decides to rely on blobs already in the store — a build that
 * finds a file's content stored and writes nothing, a deploy that reuses an
 * artifact or brings back a release's — runs inside a shared section until
 * the database says so (an artifact record, the deploy's artifact). The
 * collector reads those references and deletes only inside the exclusive
 * section: so it never deletes a blob a section has just decided to rely
 * on, and a section that starts after it finds the blob gone and writes it
 * again. Shared sections nest (a build inside a deploy's section): the
 * async context says whether this one already holds the gate. A waiting
 * collector goes first, so a steady stream of builds cannot starve it; a
 * collector's section is short (reads and unlinks), a shared one may be a
 * whole tree's worth of hashing.
 */
export class StoreGate {
  private readonly inside = new AsyncLocalStorage<true>();
  private holders = 0;
  private collecting = false;
  private readonly waitingShared: (() => void)[] = [];
  private readonly waitingExclusive: (() => void)[] = [];

  /** Whether a collector waits for shared sections to end (what a caller holding one keeps waiting). */
  get collectorWaiting(): boolean {
    return this.waitingExclusive.length > 0;
  }

  /** Runs `fn` in a shared section (immediately when the caller already is in one). */
  async runShared<T>(fn: () => Promise<T>): Promise<T> {
    if (this.inside.getStore()) return fn();
    await this.enterShared();
    try {
      return await this.inside.run(true, fn);
    } finally {
      this.leaveShared();
    }
  }

  /** Runs `fn` alone: no shared section runs meanwhile. */
  async runExclusive<T>(fn: () => Promise<T>): Promise<T> {
    if (this.inside.getStore())
      throw new Error("the store's exclusive section cannot start inside a shared one");
    await this.enterExclusive();
    try {
      return await fn();
    } finally {
      this.leaveExclusive();
    }
  }

  private enterShared(): Promise<void> {
    if (!this.collecting && this.waitingExclusive.length === 0) {
      this.holders++;
      return Promise.resolve();
    }
    return new Promise((resolve) =>
      this.waitingShared.push(() => {
        this.holders++;
        resolve();
      }),
    );
  }

  private leaveShared(): void {
    this.holders--;
    if (this.holders === 0) this.next();
  }

  private enterExclusive(): Promise<void> {
    if (!this.collecting && this.holders === 0) {
      this.collecting = true;
      return Promise.resolve();
    }
    return new Promise((resolve) =>
      this.waitingExclusive.push(() => {
        this.collecting = true;
        resolve();
      }),
    );
  }

  private leaveExclusive(): void {
    this.collecting = false;
    this.next();
  }

  /** Hands the gate on: a waiting collector first, else every waiting shared section at once. */
  private next(): void {
    if (this.collecting || this.holders > 0) return;
    const collector = this.waitingExclusive.shift();
    if (collector) {
      collector();
      return;
    }
    for (const waiter of this.waitingShared.splice(0)) waiter();
  }
}
