import type { FastifyInstance } from "fastify";
import type { ZodTypeProvider } from "fastify-type-provider-zod";
import type { HttpDeps } from "../deps.js";
import { environmentOf } from "../environments.js";
import { envParams } from "../schemas.js";

/** The change preview: what the next deploy of an environment would ship. */
export function registerPendingRoutes(app: FastifyInstance, { engine }: HttpDeps): void {
  const r = app.withTypeProvider<ZodTypeProvider>();
  r.get(
    "/apps/:app/environments/:env/pending",
    {
      schema: {
        tags: ["releases"],
        summary: "Commits between the environment's current release and its branch heads, per component",
        params: envParams,
      },
    },
    async (request) => {
      const { principal, app: appConfig, env } = environmentOf(engine, request, "read");
      return { components: await engine.pending(principal, appConfig.name, env.name) };
    },
  );
}
