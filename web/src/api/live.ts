import type { Change } from "../../../src/http/api-types.js";
import { authHeaders } from "./client.js";
import { connection } from "./connection.js";
import { readEventStream } from "./event-stream.js";

/**
 * The page's one live connection: `GET /api/v1/events`, hints of what
 * changed, fanned out to the pages that listen. When the stream drops it
 * reconnects with a growing delay (0.5 s, 1 s, 2 s … at most 15 s) and the
 * connection banner shows; once back, every listener gets a `resync` (the
 * server replays nothing: pages read what they show again).
 */
export type LiveEvent = Change | { type: "resync" };
type Listener = (event: LiveEvent) => void;

const listeners = new Set<Listener>();
let controller: AbortController | null = null;
let wake: (() => void) | null = null;

export function onLive(listener: Listener): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

function emit(event: LiveEvent): void {
  for (const listener of [...listeners]) listener(event);
}

/** Reconnect now instead of waiting for the backoff (the banner's button). */
export function retryNow(): void {
  wake?.();
}

export function stopLive(): void {
  controller?.abort();
  controller = null;
}

export function startLive(onUnauthorized: () => void): void {
  stopLive();
  const mine = new AbortController();
  controller = mine;
  void (async () => {
    let failures = 0;
    let everOpen = false;
    while (!mine.signal.aborted) {
      let opened = false;
      try {
        await readEventStream("/api/v1/events", {
          headers: authHeaders(),
          signal: mine.signal,
          onOpen: () => {
            opened = true;
            const wasOffline = !connection.get().online;
            failures = 0;
            connection.reached();
            // Anything may have happened while we were not listening.
            if (everOpen || wasOffline) emit({ type: "resync" });
            everOpen = true;
          },
          onEvent: (event) => {
            if (event.event !== "change") return;
            try {
              emit(JSON.parse(event.data) as Change);
            } catch {
              // A malformed hint is only a hint.
            }
          },
        });
      } catch (error) {
        if (mine.signal.aborted) return;
        if (error instanceof Response && error.status === 401) {
          onUnauthorized();
          return;
        }
      }
      if (mine.signal.aborted) return;
      // The stream ended (server restarting) or failed: try again, sooner the first time.
      failures = opened ? 0 : failures + 1;
      const delay = failures === 0 ? 250 : Math.min(15_000, 500 * 2 ** (failures - 1));
      if (failures > 0) connection.lost(Date.now() + delay);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, delay);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
        mine.signal.addEventListener("abort", () => resolve(), { once: true });
      });
      wake = null;
    }
  })();
}
