import type { FastifyInstance } from "fastify";
import type { ZodTypeProvider } from "fastify-type-provider-zod";
import { z } from "zod";
import type { HttpDeps } from "../deps.js";
import { environmentOf } from "../environments.js";
import { envParams } from "../schemas.js";

const lockBody = z.strictObject({
  reason: z.string().trim().min(1).max(500).describe("why deploys are held"),
});

/** Holding and releasing an environment. */
export function registerLockRoutes(app: FastifyInstance, { engine }: HttpDeps): void {
  const r = app.withTypeProvider<ZodTypeProvider>();

  r.put(
    "/apps/:app/environments/:env/lock",
    {
      schema: {
        tags: ["locks"],
        summary: "Lock an environment against new deploys",
        params: envParams,
        body: lockBody,
      },
    },
    async (request) => {
      const { principal, app: appConfig, env } = environmentOf(engine, request, "deploy");
      return { lock: await engine.lock(principal, appConfig.name, env.name, request.body.reason) };
    },
  );

  r.delete(
    "/apps/:app/environments/:env/lock",
    {
      schema: {
        tags: ["locks"],
        summary: "Unlock an environment; returns the removed lock",
        params: envParams,
      },
    },
    async (request) => {
      const { principal, app: appConfig, env } = environmentOf(engine, request, "deploy");
      return { lock: (await engine.unlock(principal, appConfig.name, env.name)) ?? null };
    },
  );
}
