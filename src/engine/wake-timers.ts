/**
 * One timer per key (an environment) for "look again at this time": an
 * environment held back by its deploy window or min_interval gets its
 * automatic deploy when that time comes, without anyone asking. Asking
 * again for a key keeps the earlier time. Long waits are cut into steps a
 * Node timer can hold; the look made at a step asks again if still early.
 */
const MAX_STEP_MS = 6 * 3_600_000;

export class WakeTimers {
  private readonly timers = new Map<string, { at: number; timer: NodeJS.Timeout }>();
  private stopped = false;

  constructor(private readonly now: () => Date) {}

  at(key: string, when: Date, fire: () => void): void {
    if (this.stopped) return;
    const at = when.getTime();
    const existing = this.timers.get(key);
    if (existing && existing.at <= at && existing.at > this.now().getTime()) return;
    if (existing) clearTimeout(existing.timer);
    // A little after the moment, so that the clock reads the window open when the look runs.
    const delay = Math.min(Math.max(at - this.now().getTime() + 50, 0), MAX_STEP_MS);
    const timer = setTimeout(() => {
      this.timers.delete(key);
      fire();
    }, delay);
    timer.unref();
    this.timers.set(key, { at, timer });
  }

  /** Pending times by key (ISO), for tests and diagnostics. */
  pending(): Record<string, string> {
    return Object.fromEntries([...this.timers].map(([key, { at }]) => [key, new Date(at).toISOString()]));
  }

  stop(): void {
    this.stopped = true;
    for (const { timer } of this.timers.values()) clearTimeout(timer);
    this.timers.clear();
  }
}
