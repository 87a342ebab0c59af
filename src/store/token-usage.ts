/**
 * When a token was last used, written at most once per interval per token
 * (and process): every API request authenticates, and a write per request
 * would make every read endpoint a database write. Across server processes
 * the UPDATE itself skips a row written within the interval, so several
 * servers still write it about once per interval.
 */
export const TOKEN_USE_INTERVAL_MS = 60_000;

export class TokenUsage {
  private readonly written = new Map<string, number>();

  constructor(
    readonly intervalMs: number = TOKEN_USE_INTERVAL_MS,
    private readonly now: () => number = Date.now,
  ) {}

  /** Whether a use of `key` now should be written; if so it counts as written (see `failed`). */
  due(key: string): boolean {
    const at = this.now();
    const last = this.written.get(key);
    if (last !== undefined && at - last < this.intervalMs) return false;
    // Bounded: forgetting only means one more write.
    if (this.written.size >= 10_000) this.written.clear();
    this.written.set(key, at);
    return true;
  }

  /**
   * Runs `write` (given the time to store and the time before which a stored
   * value may be replaced) when a use of `key` is due. A failed write is
   * swallowed and forgotten, so the next use tries again: recording a use
   * never refuses a valid token.
   */
  async record(key: string, write: (now: string, staleBefore: string) => Promise<unknown>): Promise<void> {
    if (!this.due(key)) return;
    try {
      await write(this.nowIso(), this.staleBefore());
    } catch {
      this.failed(key);
    }
  }

  /** The write did not happen: the next use tries again. */
  failed(key: string): void {
    this.written.delete(key);
  }

  /** ISO time before which a stored value is old enough to be replaced. */
  staleBefore(): string {
    return new Date(this.now() - this.intervalMs).toISOString();
  }

  nowIso(): string {
    return new Date(this.now()).toISOString();
  }
}
