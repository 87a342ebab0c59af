import type { DeployEvent } from "./api.js";

/**
 * In-process fan-out of deploy events to live followers (SSE streams, tests).
 * Followers in other server processes poll the store instead; this only makes
 * same-process tails immediate.
 */
export class EventHub {
  private readonly listeners = new Map<number, Set<(event: DeployEvent) => void>>();
  private readonly taps = new Set<(event: DeployEvent) => void>();

  /** Every event of every deploy (the engine's change feed listens here). */
  tap(listener: (event: DeployEvent) => void): () => void {
    this.taps.add(listener);
    return () => this.taps.delete(listener);
  }

  subscribe(deployId: number, listener: (event: DeployEvent) => void): () => void {
    let set = this.listeners.get(deployId);
    if (!set) {
      set = new Set();
      this.listeners.set(deployId, set);
    }
    set.add(listener);
    return () => {
      set.delete(listener);
      if (set.size === 0) this.listeners.delete(deployId);
    };
  }

  emit(event: DeployEvent): void {
    const id = event.type === "log" ? event.deployId : event.deploy.id;
    const set = this.listeners.get(id);
    for (const listener of [...this.taps, ...(set ?? [])]) {
      try {
        listener(event);
      } catch {
        // A broken follower must not break the deploy that feeds it.
      }
    }
  }
}
