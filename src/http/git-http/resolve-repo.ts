import type { AppConfig, ComponentConfig, ConfigSnapshot } from "../../domain/app-config.js";
import { hostedRepoName } from "../../domain/app-config.js";
import { isValidName } from "../../domain/names.js";
import { can, canSee, type Principal, visibleApps } from "../../domain/roles.js";
import type { GitService } from "./pkt-line.js";

/**
 * A push URL → the app and hosted component it names, or the refusal git
 * will show. The URL is `/git/<app>.git` (a single-repo app) or
 * `/git/<app>/<component>.git` (a component of a multi-repo app): app and
 * component are separate segments, so the app is read from the URL, looked
 * up in the configuration, and authorization is checked on that app. No
 * name is ever split or derived from a longer string, which is what let app
 * `col-web` and app `col`'s component `web` share one repository before.
 */
export type HostedTarget =
  | { ok: true; app: AppConfig; component: ComponentConfig }
  | { ok: false; message: string };

/** `<name>.git`, with the same alphabet as app names; anything else never reaches git. */
export const REPO_SEGMENT = /^([a-z0-9][a-z0-9-]{0,62})\.git$/;

/** The repository a URL names: an app, and a component for `/git/<app>/<component>.git`. */
export interface RepoAddress {
  app: string;
  component: string | null;
}

/**
 * The route parameters of `/git/:repo/…` (app undefined) or
 * `/git/:app/:repo/…` → the address, or undefined for anything that is not
 * made of valid names (never looked up, never handed to git).
 */
export function repoAddress(params: { app?: string | undefined; repo: string }): RepoAddress | undefined {
  const name = REPO_SEGMENT.exec(params.repo)?.[1];
  if (name === undefined) return undefined;
  if (params.app === undefined) return { app: name, component: null };
  return isValidName(params.app) ? { app: params.app, component: name } : undefined;
}

export function resolveHostedTarget(
  snapshot: ConfigSnapshot,
  principal: Principal,
  address: RepoAddress,
  service: GitService,
): HostedTarget {
  const appName = address.app;
  // An app the token may not see is answered exactly like one that does not
  // exist, before anything is looked up: the token learns nothing of it.
  const app = canSee(principal, appName) ? snapshot.apps.get(appName) : undefined;
  if (!app)
    return {
      ok: false,
      message: `turnout: no app named '${appName}'${movedHint(snapshot, principal, address)}`,
    };
  const wanted = hostedRepoName(address.app, address.component);
  // The component whose recorded name is exactly this URL's: the shape (single
  // repo or component) must match the manifest's, not only the names.
  const component = app.components.find((c) => c.hosted && c.hostedAs === wanted);
  if (!component) {
    const hosted = app.components.filter((c) => c.hosted).map((c) => c.hostedAs);
    return {
      ok: false,
      message:
        hosted.length > 0
          ? `turnout: app '${appName}' hosts its repositories as ${hosted.join(", ")}`
          : `turnout: app '${appName}' is not hosted by Turnout (its repository is elsewhere)`,
    };
  }
  if (service === "git-receive-pack" && !can(principal, "deploy", appName)) {
    return {
      ok: false,
      message: `turnout: token '${principal.name}' (${principal.role}) may not push to ${appName}: a deployer token is needed`,
    };
  }
  if (!can(principal, "read", appName)) {
    return {
      ok: false,
      message: `turnout: token '${principal.name}' (${principal.role}) may not fetch from ${appName}`,
    };
  }
  return { ok: true, app, component };
}

/**
 * `/git/<app>-<component>.git` was the URL of a hosted component before
 * components got their own path segment: say where it went, naming only
 * apps the caller may see.
 */
function movedHint(snapshot: ConfigSnapshot, principal: Principal, address: RepoAddress): string {
  if (address.component !== null) return "";
  for (const name of visibleApps(principal, [...snapshot.apps.keys()])) {
    const app = snapshot.apps.get(name)!;
    for (const c of app.components) {
      if (c.hosted && c.hostedAs !== undefined && `${app.name}-${c.name}` === address.app) {
        return ` (a component's repository is now /git/${c.hostedAs})`;
      }
    }
  }
  return "";
}
