/**
 * Runs a task in reaction to events that come in bursts: at most one run at a
 * time and at most one start per `minIntervalMs`. The first event of a quiet
 * period runs it at once; events during a run or within the interval fold
 * into one run after it. Every event is still answered by a run that starts
 * after it, so nothing is missed, only merged.
 *
 * Why: a fleet deploy to a thousand agents brings a few thousand host
 * reports, and reacting to each one (drift watch, self-heal: each reads every
 * host of every fleet environment) cost the server O(hosts²) per deploy.
 */
export class CoalescedRunner {
  private running: Promise<void> | undefined;
  private pending = false;
  private timer: NodeJS.Timeout | undefined;
  private lastStart = Number.NEGATIVE_INFINITY;
  private stopped = false;

  constructor(
    private readonly task: () => Promise<void>,
    private readonly minIntervalMs: number,
    private readonly report: (error: unknown) => void,
  ) {}

  kick(): void {
    if (this.stopped) return;
    this.pending = true;
    this.schedule();
  }

  /** No more runs; resolves when the one in progress (if any) has ended. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.running;
  }

  private schedule(): void {
    if (this.stopped || this.running || this.timer || !this.pending) return;
    const wait = this.lastStart + this.minIntervalMs - Date.now();
    if (wait > 0) {
      this.timer = setTimeout(() => {
        this.timer = undefined;
        this.schedule();
      }, wait);
      this.timer.unref();
      return;
    }
    this.pending = false;
    this.lastStart = Date.now();
    this.running = this.task()
      .catch((error: unknown) => this.report(error))
      .finally(() => {
        this.running = undefined;
        this.schedule();
      });
  }
}
