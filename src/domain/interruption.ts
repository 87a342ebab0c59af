/**
 * Why the server itself stopped a deploy — it was shutting down — as opposed
 * to someone cancelling it. A running deploy is stopped through its
 * AbortSignal either way; this is the signal's `reason` when the server did
 * it, so the worker records `failed (interrupted)` instead of `cancelled` and
 * providers leave things as a crash would (a fleet's switched hosts stay
 * switched, for `turnout rollback` to repair) instead of undoing them.
 */
export class Interruption extends Error {
  constructor(message: string) {
    super(message);
    this.name = "Interruption";
  }
}

/** The interruption a signal was aborted with; undefined when it was not aborted, or was cancelled. */
export function interruptionOf(signal: AbortSignal): Interruption | undefined {
  return signal.aborted && signal.reason instanceof Interruption ? signal.reason : undefined;
}
