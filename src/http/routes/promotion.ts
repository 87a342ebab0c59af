import type { FastifyInstance } from "fastify";
import type { ZodTypeProvider } from "fastify-type-provider-zod";
import { z } from "zod";
import { principalOf } from "../auth.js";
import type { HttpDeps } from "../deps.js";
import { environmentOf } from "../environments.js";
import { appParams, envParams, positiveInt } from "../schemas.js";
import { deployJson, deployUrl } from "../serializers.js";

const promoteBody = z.strictObject({
  from: z.string().describe("the environment whose live release to deploy here"),
  force: z.boolean().optional().describe("admins only: promote past a lock"),
  reason: z.string().max(1000).optional().describe("why (recorded with the deploy)"),
});

const answerBody = z
  .strictObject({
    run: positiveInt.optional().describe("the run's id (see GET …/pipeline)"),
    stage: z.string().optional().describe("or: the stage the run waits to enter"),
    message: z.string().max(1000).optional().describe("why (recorded)"),
  })
  .nullish();

/** Promotion (one environment's release into another) and the app's release pipeline. */
export function registerPromotionRoutes(app: FastifyInstance, { engine }: HttpDeps): void {
  const r = app.withTypeProvider<ZodTypeProvider>();

  r.post(
    "/apps/:app/environments/:env/promote",
    {
      schema: {
        tags: ["deploys"],
        summary: "Deploy here exactly the release another environment runs (202, Location: the deploy)",
        params: envParams,
        body: promoteBody,
      },
    },
    async (request, reply) => {
      const { principal, app: appConfig, env } = environmentOf(engine, request, "deploy");
      const deploy = await engine.requestPromotion(principal, {
        app: appConfig.name,
        from: request.body.from,
        to: env.name,
        force: request.body.force,
        reason: request.body.reason,
      });
      return reply
        .code(202)
        .header("location", deployUrl(deploy.id))
        .send({ deploy: deployJson(deploy) });
    },
  );

  r.get(
    "/apps/:app/pipeline",
    {
      schema: {
        tags: ["releases"],
        summary:
          "The app's release pipeline: stages and their gates, what each runs, each release's position",
        params: appParams,
      },
    },
    async (request) => ({ pipeline: await engine.pipeline(principalOf(request), request.params.app) }),
  );

  for (const answer of ["approve", "reject"] as const) {
    r.post(
      `/apps/:app/pipeline/${answer}`,
      {
        schema: {
          tags: ["releases"],
          summary: `${answer === "approve" ? "Approve" : "Reject"} a pipeline run waiting for approval`,
          params: appParams,
          body: answerBody,
        },
      },
      async (request) => {
        const body = request.body ?? {};
        const run = await engine.answerPipeline(
          principalOf(request),
          request.params.app,
          { run: body.run, stage: body.stage },
          answer,
          body.message,
        );
        return { run };
      },
    );
  }
}
