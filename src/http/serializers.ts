import type { AppConfig, EnvironmentConfig } from "../domain/app-config.js";
import { type Deploy, deployLabel } from "../domain/deploy.js";
import type { Lock } from "../domain/lock.js";
import type { Release } from "../domain/release.js";
import type { Store } from "../store/store.js";

/**
 * Domain objects → the JSON the API promises. Kept apart from the routes so
 * every route renders a deploy, a release or an environment the same way.
 */
export type DeployJson = Deploy & { label: string; url: string };

export function deployUrl(id: number): string {
  return `/api/v1/deploys/${id}`;
}

export function deployJson(deploy: Deploy): DeployJson {
  return { ...deploy, label: deployLabel(deploy), url: deployUrl(deploy.id) };
}

export interface CurrentJson {
  releaseId: number;
  deployId: number;
  deployNumber: number;
  sha: string;
  fingerprint: string;
  createdAt: string;
}

export interface EnvSummaryJson {
  app: string;
  name: string;
  branch: string;
  autoDeploy: boolean;
  provider: string;
  lock: Lock | null;
  current: CurrentJson | null;
  active: DeployJson | null;
  queued: number;
}

export interface AppSummaryJson {
  name: string;
  repo: string;
  environments: EnvSummaryJson[];
}

export type ReleaseJson = Omit<Release, "environmentConfig"> & {
  deploy: { number: number; user: string; trigger: string; finishedAt: string | null };
};

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

/** The commit a release installed, as its deploy recorded it (whatever its components are named). */
async function currentJson(store: Store, release: Release | undefined): Promise<CurrentJson | null> {
  if (!release) return null;
  const deploy = await store.deploys.get(release.deployId);
  return {
    releaseId: release.id,
    deployId: release.deployId,
    deployNumber: release.deployNumber,
    sha: deploy.sha,
    fingerprint: release.fingerprint,
    createdAt: release.createdAt,
  };
}

export async function envSummary(
  store: Store,
  app: AppConfig,
  env: EnvironmentConfig,
): Promise<EnvSummaryJson> {
  const [lock, current, active, queued] = await Promise.all([
    store.locks.get(app.name, env.name),
    store.releases.current(app.name, env.name),
    store.deploys.active(app.name, env.name),
    store.deploys.queued(app.name, env.name),
  ]);
  return {
    app: app.name,
    name: env.name,
    branch: env.branch,
    autoDeploy: env.autoDeploy,
    provider: env.deploy.provider,
    lock: lock ?? null,
    current: await currentJson(store, current),
    active: active ? deployJson(active) : null,
    queued: queued.length,
  };
}

export async function appSummary(store: Store, app: AppConfig): Promise<AppSummaryJson> {
  const environments = await Promise.all(
    Object.values(app.environments).map((env) => envSummary(store, app, env)),
  );
  return { name: app.name, repo: publicRepo(app.repo), environments };
}

export async function releaseJson(store: Store, release: Release): Promise<ReleaseJson> {
  const { environmentConfig: _omitted, ...rest } = release;
  const deploy = await store.deploys.get(release.deployId);
  return {
    ...rest,
    deploy: {
      number: deploy.number,
      user: deploy.user,
      trigger: deploy.trigger,
      finishedAt: deploy.finishedAt,
    },
  };
}
