import type { FastifyInstance } from "fastify";
import type { ZodTypeProvider } from "fastify-type-provider-zod";
import { authorize, visibleApps } from "../../domain/roles.js";
import { principalOf } from "../auth.js";
import type { HttpDeps } from "../deps.js";
import { environmentOf, resolveApp } from "../environments.js";
import { appParams, envParams } from "../schemas.js";
import { appSummaries, appSummary, deployJson, envSummary } from "../serializers.js";
import { visibleProblems } from "../visibility.js";

/** What is configured and what state each environment is in. */
export function registerAppRoutes(app: FastifyInstance, { engine, store }: HttpDeps): void {
  const r = app.withTypeProvider<ZodTypeProvider>();

  r.get(
    "/apps",
    { schema: { tags: ["apps"], summary: "Apps, their environments and configuration problems" } },
    async (request) => {
      const principal = principalOf(request);
      authorize(principal, "read");
      const config = engine.config();
      const names = visibleApps(principal, [...config.apps.keys()].sort());
      const apps = await appSummaries(
        store,
        names.map((name) => config.apps.get(name)!),
      );
      return { apps, problems: visibleProblems(principal, config.problems) };
    },
  );

  r.get(
    "/apps/:app",
    { schema: { tags: ["apps"], summary: "One app", params: appParams } },
    async (request) => {
      const config = resolveApp(engine, principalOf(request), request.params.app, "read");
      return { app: await appSummary(store, config) };
    },
  );

  r.get(
    "/apps/:app/environments/:env",
    {
      schema: {
        tags: ["apps"],
        summary: "One environment: lock, current release, active deploy, queue and recent deploys",
        params: envParams,
      },
    },
    async (request) => {
      const { app: appConfig, env } = environmentOf(engine, request, "read");
      const [summary, queue, recent] = await Promise.all([
        envSummary(store, appConfig, env),
        store.deploys.queued(appConfig.name, env.name),
        store.deploys.list({ app: appConfig.name, env: env.name, limit: 10 }),
      ]);
      return { environment: { ...summary, queue: queue.map(deployJson), recent: recent.map(deployJson) } };
    },
  );
}
