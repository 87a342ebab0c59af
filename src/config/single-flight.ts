/**
 * One run of `task` at a time. A call arriving while a run is in progress
 * gets the next run, started after the current one and shared by every call
 * that arrived meanwhile: a caller that saw something change (a file saved,
 * a push) always gets a run that began after its change, and a storm of
 * calls costs at most two runs.
 */
export class SingleFlight<T> {
  private running: Promise<T> | undefined;
  private queued: Promise<T> | undefined;

  constructor(private readonly task: () => Promise<T>) {}

  run(): Promise<T> {
    if (!this.running) {
      this.running = this.task().finally(() => {
        this.running = undefined;
      });
      return this.running;
    }
    if (!this.queued) {
      this.queued = this.running
        .catch(() => undefined)
        .then(() => {
          this.queued = undefined;
          return this.run();
        });
    }
    return this.queued;
  }
}
