/**
 * Whether the server can be reached, for the banner at the top of every
 * page. Any answer from the server (even an error) means it can; a request
 * that never got one means it cannot. The live event stream is what probes
 * for the way back (api/live.ts), with a backoff.
 */
export interface ConnectionState {
  online: boolean;
  /** When the next attempt to reconnect is due (while offline). */
  retryAt: number | null;
  /** Since when it is offline. */
  since: number | null;
}

type Listener = (state: ConnectionState) => void;

let state: ConnectionState = { online: true, retryAt: null, since: null };
const listeners = new Set<Listener>();

function set(next: ConnectionState): void {
  state = next;
  for (const listener of [...listeners]) listener(state);
}

export const connection = {
  get: (): ConnectionState => state,
  subscribe(listener: Listener): () => void {
    listeners.add(listener);
    return () => listeners.delete(listener);
  },
  lost(retryAt: number | null = null): void {
    set({ online: false, retryAt, since: state.since ?? Date.now() });
  },
  reached(): void {
    if (!state.online) set({ online: true, retryAt: null, since: null });
  },
};
