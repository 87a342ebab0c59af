import type { Change } from "../domain/dashboard.js";

/**
 * What changed, for live pages (the dashboard's overview, environment and
 * host pages): small hints that say what to read again, never the data
 * itself, so a follower always reads the current truth through the API and
 * a hint dropped or repeated costs nothing. In-process only: followers of a
 * server process learn about work done by another one when they read again
 * (the web client also rereads every few seconds and after reconnecting).
 */
export type { Change } from "../domain/dashboard.js";

export class ChangeFeed {
  private readonly listeners = new Set<(change: Change) => void>();

  subscribe(listener: (change: Change) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  emit(change: Change): void {
    for (const listener of [...this.listeners]) {
      try {
        listener(change);
      } catch {
        // A broken follower must not break the work that feeds it.
      }
    }
  }
}
