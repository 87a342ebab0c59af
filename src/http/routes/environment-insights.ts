import type { FastifyInstance } from "fastify";
import type { ZodTypeProvider } from "fastify-type-provider-zod";
import { z } from "zod";
import type { HttpDeps } from "../deps.js";
import { environmentOf } from "../environments.js";
import { envParams, positiveInt } from "../schemas.js";

const statsQuery = z
  .object({
    days: z.coerce
      .number()
      .int()
      .min(1)
      .max(90)
      .default(30)
      .describe("days back, today included (default 30)"),
  })
  .strict();
const readinessQuery = z
  .object({
    ref: z.string().max(256).optional().describe("branch, tag or SHA; default: the environment's branch"),
  })
  .strict();
const previewQuery = z
  .object({
    to: positiveInt
      .optional()
      .describe("deploy number whose release to bring back; default: the one a rollback picks"),
  })
  .strict();

/**
 * What an environment page shows before anyone presses a button: its
 * figures over the last days, whether a deploy would go through now and
 * why not, and what a rollback would undo.
 */
export function registerEnvironmentInsightRoutes(api: FastifyInstance, { engine, store }: HttpDeps): void {
  const r = api.withTypeProvider<ZodTypeProvider>();

  r.get(
    "/apps/:app/environments/:env/stats",
    {
      schema: {
        tags: ["releases"],
        summary: "Deploys per day, duration, failure rate and mean time to restore over the last days",
        params: envParams,
        querystring: statsQuery,
      },
    },
    async (request) => {
      const { app, env } = environmentOf(engine, request, "read");
      return { stats: await store.stats.environment(app.name, env.name, request.query.days) };
    },
  );

  r.get(
    "/apps/:app/environments/:env/deploy-readiness",
    {
      schema: {
        tags: ["deploys"],
        summary: "Whether a deploy would go through now, and every reason it would be refused or held",
        params: envParams,
        querystring: readinessQuery,
      },
    },
    async (request) => {
      const { principal, app, env } = environmentOf(engine, request, "read");
      return { readiness: await engine.readiness(principal, app.name, env.name, request.query.ref) };
    },
  );

  r.get(
    "/apps/:app/environments/:env/rollback-preview",
    {
      schema: {
        tags: ["releases"],
        summary: "What a rollback would bring back and exactly which releases and commits it undoes",
        params: envParams,
        querystring: previewQuery,
      },
    },
    async (request) => {
      const { principal, app, env } = environmentOf(engine, request, "read");
      return { preview: await engine.rollbackPreview(principal, app.name, env.name, request.query.to) };
    },
  );
}
