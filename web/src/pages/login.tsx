import { useEffect, useState } from "preact/hooks";
import { api } from "../api/client.js";
import { storeToken } from "../api/session.js";
import { ErrorBox } from "../components/error-box.js";
import { href } from "../lib/router.js";

/**
 * Sign-in: paste a token (kept for this tab, or remembered on this
 * computer), or arrive with a one-time code from `turnout ui`, which is
 * exchanged for a short-lived token and removed from the address bar.
 */
export function LoginPage({
  code,
  reason,
  onSignedIn,
}: {
  code: string | null;
  reason: string | null;
  onSignedIn: () => void;
}) {
  const [token, setToken] = useState("");
  const [remember, setRemember] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);

  useEffect(() => {
    if (!code) return;
    // The code is single-use: take it out of the address bar and history at once.
    history.replaceState(null, "", href.login());
    setBusy(true);
    api<{ token: string }>("POST", "/api/v1/login-codes/exchange", { code }, "").then(
      ({ token: fresh }) => {
        storeToken(fresh, false);
        onSignedIn();
      },
      (failure: unknown) => {
        setError(failure);
        setBusy(false);
      },
    );
  }, [code]);

  const submit = async (event: Event) => {
    event.preventDefault();
    const value = token.trim();
    if (!value) return;
    setBusy(true);
    setError(null);
    try {
      await api("GET", "/api/v1/me", undefined, value);
      storeToken(value, remember);
      onSignedIn();
    } catch (failure) {
      setError(failure);
      setBusy(false);
    }
  };

  return (
    <div class="login-page">
      <form class="login-card" onSubmit={submit}>
        <h1>
          <svg viewBox="0 0 32 32" width="28" height="28" aria-hidden="true">
            <rect width="32" height="32" rx="7" class="brand-bg" />
            <path d="M7 24 L16 15 L16 7 M16 15 L25 24" class="brand-fg" />
          </svg>
          Sign in to Turnout
        </h1>
        {reason && <p class="notice">{reason}</p>}
        {code && busy && <p class="muted">Signing in with the code from `turnout ui`…</p>}
        <label for="token">API token</label>
        <input
          id="token"
          type="password"
          autoComplete="off"
          spellcheck={false}
          placeholder="tnt_…"
          value={token}
          onInput={(e) => setToken((e.target as HTMLInputElement).value)}
          disabled={busy}
        />
        <label class="check">
          <input
            type="checkbox"
            checked={remember}
            onChange={(e) => setRemember((e.target as HTMLInputElement).checked)}
          />
          Remember on this computer
        </label>
        <ErrorBox error={error} />
        <button type="submit" class="primary" disabled={busy || !token.trim()}>
          Sign in
        </button>
        <p class="muted small-print">
          On the server's machine, <code>turnout ui</code> signs you in as its admin with a one-time link.
          Elsewhere, an admin creates a token with{" "}
          <code>turnout token create NAME --role viewer|deployer|admin</code>.
        </p>
      </form>
    </div>
  );
}
