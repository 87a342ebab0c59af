import { useCallback, useEffect, useState } from "preact/hooks";
import type { MeJson } from "../../src/http/api-types.js";
import { api, whenUnauthorized } from "./api/client.js";
import { ApiError } from "./api/errors.js";
import { startLive, stopLive } from "./api/live.js";
import { clearToken, storedToken } from "./api/session.js";
import { ErrorBox } from "./components/error-box.js";
import { Layout } from "./components/layout.js";
import { MeContext } from "./lib/me.js";
import { href, navigate, useRoute } from "./lib/router.js";
import { DeployPage } from "./pages/deploy.js";
import { EnvironmentPage } from "./pages/environment.js";
import { HostPage } from "./pages/host.js";
import { HostsPage } from "./pages/hosts.js";
import { LoginPage } from "./pages/login.js";
import { OverviewPage } from "./pages/overview.js";

type Session =
  | { state: "checking" }
  | { state: "signed-out"; reason: string | null }
  | { state: "in"; me: MeJson };

/**
 * The shell: who is signed in (GET /me with the stored token), the live
 * connection, and the page the URL's fragment names.
 */
export function App() {
  const route = useRoute();
  const [session, setSession] = useState<Session>(() =>
    storedToken() ? { state: "checking" } : { state: "signed-out", reason: null },
  );
  const [startupError, setStartupError] = useState<unknown>(null);

  const signOutLocally = useCallback((reason: string | null) => {
    stopLive();
    clearToken();
    setSession({ state: "signed-out", reason });
  }, []);

  const check = useCallback(() => {
    if (!storedToken()) {
      setSession({ state: "signed-out", reason: null });
      return;
    }
    setSession({ state: "checking" });
    api<{ me: MeJson }>("GET", "/api/v1/me").then(
      ({ me }) => {
        setStartupError(null);
        setSession({ state: "in", me });
      },
      (error: unknown) => {
        if (error instanceof ApiError && error.status === 401) {
          signOutLocally("Your sign-in is no longer valid (revoked or expired). Sign in again.");
        } else {
          setStartupError(error);
          setTimeout(check, 3000);
        }
      },
    );
  }, [signOutLocally]);

  useEffect(() => {
    whenUnauthorized(() =>
      signOutLocally("Your sign-in is no longer valid (revoked or expired). Sign in again."),
    );
    check();
  }, []);

  useEffect(() => {
    if (session.state !== "in") return;
    startLive(() => signOutLocally("Your sign-in is no longer valid (revoked or expired). Sign in again."));
    return stopLive;
  }, [session.state]);

  // After sign-in, the login page is not where anyone wants to stay.
  useEffect(() => {
    if (session.state === "in" && route.name === "login") navigate(href.overview(), { replace: true });
  }, [session.state, route.name]);

  if (session.state === "checking") {
    return (
      <div class="center-page">
        {startupError ? <ErrorBox error={startupError} /> : <p class="muted">Connecting…</p>}
      </div>
    );
  }
  if (session.state === "signed-out" || route.name === "login") {
    return (
      <LoginPage
        code={route.query.get("code")}
        reason={session.state === "signed-out" ? session.reason : null}
        onSignedIn={check}
      />
    );
  }
  const me = session.me;
  return (
    <MeContext.Provider value={me}>
      <Layout route={route} onSignOut={signOutLocally}>
        {route.name === "overview" && <OverviewPage query={route.query} />}
        {route.name === "environment" && <EnvironmentPage app={route.app} env={route.env} />}
        {route.name === "deploy" && <DeployPage id={route.id} />}
        {route.name === "hosts" && <HostsPage />}
        {route.name === "host" && <HostPage name={route.host} />}
        {route.name === "not-found" && (
          <div class="page">
            <h1>Nothing here</h1>
            <p>
              There is no page at <code>{route.path}</code>.{" "}
              <a href={href.overview()}>Back to the overview</a>.
            </p>
          </div>
        )}
      </Layout>
    </MeContext.Provider>
  );
}
