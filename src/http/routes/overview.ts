import type { FastifyInstance } from "fastify";
import type { AppConfig } from "../../domain/app-config.js";
import { isTurnoutError } from "../../domain/errors.js";
import { authorize, visibleApps } from "../../domain/roles.js";
import type { FleetHostState } from "../../engine/fleet-ops.js";
import type { DeployHost } from "../../store/fleet.js";
import type { Store } from "../../store/store.js";
import type {
  DeployHostJson,
  DeployJson,
  FleetHostJson,
  HostJson,
  OverviewActiveJson,
  OverviewAppJson,
  OverviewEnvJson,
  OverviewJson,
} from "../api-types.js";
import { principalOf } from "../auth.js";
import type { HttpDeps } from "../deps.js";
import { appSummaries } from "../serializers.js";
import { visibleProblems } from "../visibility.js";
import type { HostJson as RouteHostJson } from "./hosts.js";

// The API's JSON shapes and the code's types must not drift apart.
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : never) : never;
const _hostShapes: [
  Same<DeployHostJson, DeployHost>,
  Same<FleetHostJson, FleetHostState>,
  Same<HostJson, RouteHostJson>,
] = [true, true, true];
void _hostShapes;

/** Host steps after which a host needs nothing more from the deploy. */
const DONE_STEPS = new Set(["switched", "healthy", "rolled_back"]);
const FAILED_STEPS = new Set(["stage_failed", "failed", "depooled"]);

/**
 * `GET /api/v1/overview`: the first screen of the dashboard in one read —
 * every visible app × environment with its live release (commit described),
 * lock, queue, running deploy (phase and progress), undeployed commits and,
 * for fleets, drifted and depooled hosts. The per-environment part is a
 * constant number of queries whatever the number of apps; fleets and
 * running deploys add a few each.
 */
export function registerOverviewRoutes(api: FastifyInstance, { engine, store }: HttpDeps): void {
  api.get(
    "/overview",
    {
      schema: {
        tags: ["apps"],
        summary:
          "Every app × environment with its live release, lock, queue, running deploy, undeployed commits and fleet state",
      },
    },
    async (request): Promise<OverviewJson> => {
      const principal = principalOf(request);
      authorize(principal, "read");
      const config = engine.config();
      const names = visibleApps(principal, [...config.apps.keys()].sort());
      const apps = names.map((name) => config.apps.get(name)!);
      return {
        apps: await overviewOf(store, apps, (app, env) => engine.fleetHosts(principal, app, env)),
        problems: visibleProblems(principal, config.problems),
        at: new Date().toISOString(),
      };
    },
  );
}

async function overviewOf(
  store: Store,
  apps: AppConfig[],
  fleetHosts: (app: string, env: string) => Promise<FleetHostState[]>,
): Promise<OverviewAppJson[]> {
  const summaries = await appSummaries(store, apps);
  const envs = summaries.flatMap((a) => a.environments);
  const currentIds = envs.flatMap((e) => (e.current ? [e.current.deployId] : []));
  const names = apps.map((a) => a.name);
  const [currentDeploys, undeployed, lastFinished] = await Promise.all([
    store.commits.deploys(currentIds),
    store.undeployed.list(names),
    store.stats.lastFinished(names),
  ]);
  const deploysById = new Map(currentDeploys.map((d) => [d.id, d]));
  const undeployedByEnv = new Map(undeployed.map((u) => [`${u.app}/${u.env}`, u]));
  const providers = new Map(apps.map((a) => [a.name, a]));

  const extras = await Promise.all(
    envs.map(async (env): Promise<OverviewEnvJson> => {
      const deploy = env.current ? deploysById.get(env.current.deployId) : undefined;
      const counted = undeployedByEnv.get(`${env.app}/${env.name}`);
      // A count made against another release than the live one is stale until the next look.
      const fresh = counted && counted.baseReleaseId === (env.current?.releaseId ?? null);
      const isFleet = providers.get(env.app)?.environments[env.name]?.deploy.provider === "fleet";
      const [fleet, active] = await Promise.all([
        isFleet ? fleetSummary(fleetHosts, env.app, env.name) : null,
        env.active ? activeOf(store, env.active, isFleet) : null,
      ]);
      return {
        ...env,
        current: env.current
          ? {
              ...env.current,
              commit: deploy?.commit ?? null,
              user: deploy?.user ?? "",
              finishedAt: deploy?.finishedAt ?? null,
            }
          : null,
        active,
        undeployed:
          counted && fresh
            ? {
                count: counted.count,
                truncated: counted.truncated,
                newestSha: counted.newestSha,
                checkedAt: counted.checkedAt,
              }
            : null,
        lastFinished: lastFinished.get(`${env.app}/${env.name}`) ?? null,
        fleet,
      };
    }),
  );
  const byKey = new Map(extras.map((e) => [`${e.app}/${e.name}`, e]));
  return summaries.map((a) => ({
    name: a.name,
    repo: a.repo,
    environments: a.environments.map((e) => byKey.get(`${e.app}/${e.name}`)!),
  }));
}

async function activeOf(store: Store, active: DeployJson, isFleet: boolean): Promise<OverviewActiveJson> {
  const [typicalDurationMs, hosts] = await Promise.all([
    store.stats.typicalDuration(active.app, active.env),
    isFleet ? store.fleet.deployHosts(active.id) : Promise.resolve(null),
  ]);
  return {
    ...active,
    typicalDurationMs,
    hosts: hosts
      ? {
          total: hosts.length,
          done: hosts.filter((h) => DONE_STEPS.has(h.step)).length,
          failed: hosts.filter((h) => FAILED_STEPS.has(h.step)).length,
        }
      : null,
  };
}

async function fleetSummary(
  fleetHosts: (app: string, env: string) => Promise<FleetHostState[]>,
  app: string,
  env: string,
): Promise<OverviewEnvJson["fleet"]> {
  let hosts: FleetHostState[];
  try {
    hosts = await fleetHosts(app, env);
  } catch (error) {
    if (isTurnoutError(error)) return null;
    throw error;
  }
  return {
    total: hosts.length,
    connected: hosts.filter((h) => h.connected).length,
    drifted: hosts.filter((h) => h.drifted).length,
    depooled: hosts.filter((h) => h.poolState === "depooled").length,
  };
}
