/**
 * How the queue picks work. Each environment is a FIFO with one active deploy
 * at a time (the schema enforces that too); a server process runs at most
 * `concurrency` deploys at once across all environments.
 */
export function freeSlots(running: number, concurrency: number): number {
  return Math.max(0, concurrency - running);
}

/** Backoff for polling the queue when nothing was claimable: short, bounded. */
export function idlePollDelay(consecutiveEmptyPolls: number): number {
  return Math.min(1000, 50 * 2 ** Math.min(consecutiveEmptyPolls, 5));
}
