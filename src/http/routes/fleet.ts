import type { FastifyInstance } from "fastify";
import type { ZodTypeProvider } from "fastify-type-provider-zod";
import { z } from "zod";
import { principalOf } from "../auth.js";
import { findDeploy } from "../deploy-lookup.js";
import type { HttpDeps } from "../deps.js";
import { environmentOf } from "../environments.js";
import { deployIdParams, envParams } from "../schemas.js";
import { deployJson, deployUrl } from "../serializers.js";

const switchBody = z.strictObject({ slot: z.string().describe("the slot whose release becomes current") });

/** Fleet operations: per-host state, drift, reconcile, slot switches, approvals. */
export function registerFleetRoutes(app: FastifyInstance, { engine, store }: HttpDeps): void {
  const r = app.withTypeProvider<ZodTypeProvider>();

  r.get(
    "/apps/:app/environments/:env/hosts",
    {
      schema: {
        tags: ["fleet"],
        summary: "The environment's hosts: what each runs, the environment's release, drift",
        params: envParams,
      },
    },
    async (request) => {
      const { principal, app: appConfig, env } = environmentOf(engine, request, "read");
      return { hosts: await engine.fleetHosts(principal, appConfig.name, env.name) };
    },
  );

  r.post(
    "/apps/:app/environments/:env/reconcile",
    {
      schema: {
        tags: ["fleet"],
        summary: "Bring drifted hosts to the environment's release (202, Location: the deploy)",
        params: envParams,
      },
    },
    async (request, reply) => {
      const { principal, app: appConfig, env } = environmentOf(engine, request, "deploy");
      const deploy = await engine.reconcile(principal, appConfig.name, env.name);
      return reply
        .code(202)
        .header("location", deployUrl(deploy.id))
        .send({ deploy: deployJson(deploy) });
    },
  );

  r.post(
    "/apps/:app/environments/:env/switch",
    {
      schema: {
        tags: ["fleet"],
        summary: "Point `current` where a slot points, on every host (202, Location: the deploy)",
        params: envParams,
        body: switchBody,
      },
    },
    async (request, reply) => {
      const { principal, app: appConfig, env } = environmentOf(engine, request, "deploy");
      const deploy = await engine.switchSlot(principal, appConfig.name, env.name, request.body.slot);
      return reply
        .code(202)
        .header("location", deployUrl(deploy.id))
        .send({ deploy: deployJson(deploy) });
    },
  );

  r.get(
    "/deploys/:id/hosts",
    {
      schema: { tags: ["fleet"], summary: "Per-host progress of a fleet deploy", params: deployIdParams },
    },
    async (request) => {
      const deploy = await findDeploy(engine, principalOf(request), request.params.id, "read");
      return { hosts: await store.fleet.deployHosts(deploy.id) };
    },
  );

  for (const answer of ["approve", "abort"] as const) {
    r.post(
      `/deploys/:id/${answer}`,
      {
        schema: {
          tags: ["fleet"],
          summary:
            answer === "approve"
              ? "Let a deploy waiting after its canary go on"
              : "Stop it: the canary is switched back",
          params: deployIdParams,
        },
      },
      async (request) => {
        const principal = principalOf(request);
        const found = await findDeploy(engine, principal, request.params.id, "deploy");
        const deploy = await engine.answerApproval(
          principal,
          found.id,
          answer === "approve" ? "approved" : "aborted",
        );
        return { deploy: deployJson(deploy) };
      },
    );
  }
}
