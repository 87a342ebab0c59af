import path from "node:path";
import type { AppConfig, ComponentConfig, ConfigSnapshot } from "../../domain/app-config.js";
import { can, canSee, type Principal } from "../../domain/roles.js";
import type { GitService } from "./pkt-line.js";

/**
 * `/git/<name>.git` → the app and hosted component it names, or the refusal
 * git will show. The URL names the repository file, which for the primary
 * component of a single-repo app is `<app>.git` and for a component of a
 * multi-repo app `<app>-<component>.git` (see config/app-builder.ts); looking
 * the file name up among the hosted components covers both without guessing.
 */
export type HostedTarget =
  | { ok: true; app: AppConfig; component: ComponentConfig }
  | { ok: false; message: string };

/** `<name>.git`, with the same alphabet as app names; anything else never reaches git. */
export const REPO_SEGMENT = /^([a-z0-9][a-z0-9-]{0,126})\.git$/;

function findHosted(
  snapshot: ConfigSnapshot,
  file: string,
): { app: AppConfig; component: ComponentConfig } | undefined {
  for (const app of snapshot.apps.values()) {
    for (const component of app.components) {
      if (component.hosted && path.basename(component.repo) === file) return { app, component };
    }
  }
  return undefined;
}

export function resolveHostedTarget(
  snapshot: ConfigSnapshot,
  principal: Principal,
  name: string,
  service: GitService,
): HostedTarget {
  // Apps the token may not see are left out before anything is looked up, so
  // every answer about them is the answer about a name that does not exist.
  const visible = visibleSnapshot(snapshot, principal);
  const hosted = findHosted(visible, `${name}.git`);
  if (!hosted) {
    const app = visible.apps.get(name);
    if (!app) return { ok: false, message: `turnout: no app named '${name}'` };
    const others = app.components.filter((c) => c.hosted).map((c) => path.basename(c.repo));
    return {
      ok: false,
      message:
        others.length > 0
          ? `turnout: app '${name}' hosts its repositories as ${others.join(", ")}`
          : `turnout: app '${name}' is not hosted by Turnout (its repository is elsewhere)`,
    };
  }
  const appName = hosted.app.name;
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
  return { ok: true, ...hosted };
}

function visibleSnapshot(snapshot: ConfigSnapshot, principal: Principal): ConfigSnapshot {
  if (principal.apps === null) return snapshot;
  const apps = new Map([...snapshot.apps].filter(([app]) => canSee(principal, app)));
  return { ...snapshot, apps };
}
