import { useEffect, useState } from "preact/hooks";
import { type ConnectionState, connection } from "../api/connection.js";
import { retryNow } from "../api/live.js";

/**
 * Shown while the server cannot be reached: since when, when the next
 * attempt is, and a button to try now. It goes away by itself when the
 * connection is back (and the page reads everything again).
 */
export function ConnectionBanner() {
  const [state, setState] = useState<ConnectionState>(connection.get());
  const [now, setNow] = useState(Date.now());
  useEffect(() => connection.subscribe(setState), []);
  useEffect(() => {
    if (state.online) return;
    const timer = setInterval(() => setNow(Date.now()), 500);
    return () => clearInterval(timer);
  }, [state.online]);
  if (state.online) return null;
  const wait = state.retryAt ? Math.max(0, Math.ceil((state.retryAt - now) / 1000)) : null;
  return (
    <div class="connection-banner" role="status" aria-live="polite" data-testid="connection-banner">
      <strong>Connection to the server lost.</strong>{" "}
      <span>
        {wait === null || wait === 0 ? "Reconnecting…" : `Reconnecting in ${wait} s.`} What you see may be out
        of date.
      </span>
      <button type="button" class="small" onClick={retryNow}>
        Retry now
      </button>
    </div>
  );
}
