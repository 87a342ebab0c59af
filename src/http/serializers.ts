import type { AppConfig, EnvironmentConfig } from "../domain/app-config.js";
import { type Deploy, deployLabel } from "../domain/deploy.js";
import type { Release } from "../domain/release.js";
import { type EnvironmentOverview, overviewKey } from "../store/overview.js";
import type { Store } from "../store/store.js";
import type {
  AppSummaryJson,
  ComponentChange,
  DeployJson,
  EnvSummaryJson,
  ReleaseJson,
} from "./api-types.js";

/**
 * Domain objects → the JSON the API promises. Kept apart from the routes so
 * every route renders a deploy, a release or an environment the same way.
 * The shapes themselves live in api-types.ts, which the web UI shares.
 */
export type {
  AppSummaryJson,
  ComponentChange,
  CurrentJson,
  DeployJson,
  EnvSummaryJson,
  ReleaseJson,
} from "./api-types.js";

export function deployUrl(id: number): string {
  return `/api/v1/deploys/${id}`;
}

export function deployJson(deploy: Deploy): DeployJson {
  return { ...deploy, label: deployLabel(deploy), url: deployUrl(deploy.id) };
}

/**
 * Repository URLs may carry credentials (`https://token@host/…`). Anything a
 * URL parser recognises loses its password, and https/http URLs their user
 * too (tokens are often passed as the user); scp-like `git@host:path` keeps
 * its user, which is not a secret.
 */
export function publicRepo(repo: string): string {
  if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(repo)) return repo;
  let url: URL;
  try {
    url = new URL(repo);
  } catch {
    return repo.replace(/\/\/[^/@]*@/, "//");
  }
  if (url.password) url.password = "";
  if (/^https?:$/.test(url.protocol) && url.username) url.username = "";
  return url.toString();
}

const EMPTY: EnvironmentOverview = { lock: undefined, current: undefined, active: undefined, queued: 0 };

function envSummaryOf(
  app: AppConfig,
  env: EnvironmentConfig,
  state: EnvironmentOverview = EMPTY,
): EnvSummaryJson {
  const current = state.current;
  return {
    app: app.name,
    name: env.name,
    branch: env.branch,
    autoDeploy: env.autoDeploy,
    provider: env.deploy.provider,
    lock: state.lock ?? null,
    current: current
      ? {
          releaseId: current.release.id,
          deployId: current.release.deployId,
          deployNumber: current.release.deployNumber,
          sha: current.sha,
          fingerprint: current.release.fingerprint,
          createdAt: current.release.createdAt,
        }
      : null,
    unreviewed: current?.release.emergency ?? null,
    active: state.active ? deployJson(state.active) : null,
    queued: state.queued,
  };
}

export async function envSummary(
  store: Store,
  app: AppConfig,
  env: EnvironmentConfig,
): Promise<EnvSummaryJson> {
  const states = await store.overview.environments([app.name]);
  return envSummaryOf(app, env, states.get(overviewKey(app.name, env.name)));
}

/** Summaries of many apps from one overview read (a constant number of queries). */
export async function appSummaries(store: Store, apps: AppConfig[]): Promise<AppSummaryJson[]> {
  const states = await store.overview.environments(apps.map((a) => a.name));
  return apps.map((app) => ({
    name: app.name,
    repo: publicRepo(app.repo),
    environments: Object.values(app.environments).map((env) =>
      envSummaryOf(app, env, states.get(overviewKey(app.name, env.name))),
    ),
  }));
}

export async function appSummary(store: Store, app: AppConfig): Promise<AppSummaryJson> {
  return (await appSummaries(store, [app]))[0]!;
}

export async function releaseJson(store: Store, release: Release, before?: Release): Promise<ReleaseJson> {
  const { environmentConfig: _omitted, ...rest } = release;
  const deploy = await store.deploys.get(release.deployId);
  return {
    ...rest,
    changes: componentChanges(before, release),
    configChanged: before !== undefined && settingsChanged(before, release),
    deploy: {
      number: deploy.number,
      ref: deploy.ref,
      user: deploy.user,
      trigger: deploy.trigger,
      startedAt: deploy.startedAt,
      finishedAt: deploy.finishedAt,
      commit: deploy.commit,
      promotedFrom: deploy.promotedFrom,
      reason: deploy.reason,
    },
  };
}

/**
 * Whether a release ran with other settings than the one before it: by the
 * per-app revision, so that another app's edit is no change here; by the
 * global revision only for releases recorded before per-app revisions.
 */
function settingsChanged(before: Release, after: Release): boolean {
  if (before.appRevision !== null && after.appRevision !== null)
    return before.appRevision !== after.appRevision;
  return before.configRevision !== after.configRevision;
}

export function componentChanges(before: Release | undefined, after: Release): ComponentChange[] {
  const names = new Set([...Object.keys(before?.components ?? {}), ...Object.keys(after.components)]);
  return [...names]
    .sort()
    .map((component) => ({
      component,
      from: before?.components[component] ?? null,
      to: after.components[component] ?? null,
    }))
    .filter((change) => change.from !== change.to);
}
