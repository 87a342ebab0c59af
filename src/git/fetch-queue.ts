/**
 * One fetch at a time per mirror. A caller arriving while a fetch runs cannot
 * use that one (it may have started before the commit the caller wants was
 * pushed), so it waits for the next; everyone arriving meanwhile shares that
 * same next run. A burst of N requests thus costs at most two fetches.
 */
export class FetchQueue {
  private readonly slots = new Map<string, { running: Promise<void>; next?: Promise<void> }>();

  run(key: string, task: () => Promise<void>): Promise<void> {
    const slot = this.slots.get(key);
    if (!slot) return this.start(key, task);
    slot.next ??= slot.running.then(noop, noop).then(() => this.start(key, task));
    return slot.next;
  }

  private start(key: string, task: () => Promise<void>): Promise<void> {
    const running = Promise.resolve().then(task);
    const slot: { running: Promise<void>; next?: Promise<void> } = { running };
    this.slots.set(key, slot);
    running.then(noop, noop).then(() => {
      if (this.slots.get(key) === slot && slot.next === undefined) this.slots.delete(key);
    });
    return running;
  }
}

function noop(): void {}
