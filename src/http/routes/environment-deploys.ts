import type { FastifyInstance } from "fastify";
import type { ZodTypeProvider } from "fastify-type-provider-zod";
import { z } from "zod";
import type { HttpDeps } from "../deps.js";
import { environmentOf } from "../environments.js";
import { envParams, positiveInt } from "../schemas.js";
import { deployJson, deployUrl, releaseJson } from "../serializers.js";

// Clients may only claim to be one of the interactive front ends; `auto`,
// `webhook`, `rollback`, … are set by the server itself.
const deployBody = z
  .strictObject({
    ref: z
      .string()
      .optional()
      .describe(
        "branch, tag or SHA, optionally walked back with ~N or ^N (main~1); default: the environment's branch",
      ),
    refs: z
      .record(z.string(), z.string())
      .optional()
      .describe("multi-repo apps: refs of the other components by name; default: their branches"),
    force: z
      .boolean()
      .optional()
      .describe(
        "deploy past a lock (admins), or outside the deploy windows or past a locked commit (deployers)",
      ),
    reason: z
      .string()
      .max(1000)
      .optional()
      .describe(
        "why (recorded, audit-logged): required to force outside the deploy windows, and from an admin deploying directly where promote_from is set",
      ),
    slot: z.string().optional().describe("fleets: point this slot instead of current"),
    artifact: z.string().optional().describe("fleets: deploy this uploaded artifact (sha256 digest)"),
    params: z
      .record(z.string(), z.string())
      .optional()
      .describe("passed to the deploy as TURNOUT_PARAM_<NAME>"),
    trigger: z.enum(["api", "cli", "ui"]).optional(),
    emergency: z
      .strictObject({
        base: z.string().nullable().optional().describe("the commit the tree started from (full SHA)"),
        files: z.array(z.string()).optional().describe("paths changed from the base"),
        reason: z.string().describe("why this change goes out unreviewed (required)"),
      })
      .optional()
      .describe(
        "an emergency deploy of a working tree uploaded as `artifact`: allowed where the environment's allow_emergency permits the caller's role",
      ),
  })
  .nullish();

const rollbackBody = z
  .strictObject({
    to: positiveInt.optional().describe("deploy number whose release to bring back"),
    force: z.boolean().optional().describe("admins only: roll back past a lock"),
  })
  .nullish();

const releasesQuery = z.strictObject({ limit: z.coerce.number().int().min(1).max(200).default(20) });

/** Starting deploys and rollbacks on an environment, and its history. */
export function registerEnvironmentDeployRoutes(app: FastifyInstance, { engine, store }: HttpDeps): void {
  const r = app.withTypeProvider<ZodTypeProvider>();

  r.post(
    "/apps/:app/environments/:env/deploys",
    {
      schema: {
        tags: ["deploys"],
        summary: "Request a deploy (202, Location: the deploy)",
        params: envParams,
        body: deployBody,
      },
    },
    async (request, reply) => {
      const { principal, app: appConfig, env } = environmentOf(engine, request, "deploy");
      const body = request.body ?? {};
      const deploy = await engine.requestDeploy(principal, {
        app: appConfig.name,
        env: env.name,
        ref: body.ref,
        refs: body.refs,
        slot: body.slot,
        artifact: body.artifact,
        force: body.force,
        reason: body.reason,
        params: body.params,
        trigger: body.trigger ?? "api",
        emergency: body.emergency,
      });
      return reply
        .code(202)
        .header("location", deployUrl(deploy.id))
        .send({ deploy: deployJson(deploy) });
    },
  );

  r.get(
    "/apps/:app/environments/:env/deploys/:number",
    {
      schema: {
        tags: ["deploys"],
        summary: "A deploy by its number in the environment",
        params: envParams.extend({ number: positiveInt }),
      },
    },
    async (request) => {
      const { app: appConfig, env } = environmentOf(engine, request, "read");
      const deploy = await store.deploys.getByNumber(appConfig.name, env.name, request.params.number);
      return { deploy: deployJson(deploy) };
    },
  );

  r.get(
    "/apps/:app/environments/:env/releases",
    {
      schema: {
        tags: ["releases"],
        summary: "What was live in the environment, newest first",
        params: envParams,
        querystring: releasesQuery,
      },
    },
    async (request) => {
      const { app: appConfig, env } = environmentOf(engine, request, "read");
      // One more than asked, so the oldest shown can say what it changed too.
      const releases = await store.releases.history(appConfig.name, env.name, request.query.limit + 1);
      const shown = releases.slice(0, request.query.limit);
      return {
        releases: await Promise.all(shown.map((release, i) => releaseJson(store, release, releases[i + 1]))),
      };
    },
  );

  r.post(
    "/apps/:app/environments/:env/rollback",
    {
      schema: {
        tags: ["deploys"],
        summary: "Bring back an earlier release (202, Location: the rollback deploy)",
        params: envParams,
        body: rollbackBody,
      },
    },
    async (request, reply) => {
      const { principal, app: appConfig, env } = environmentOf(engine, request, "deploy");
      const deploy = await engine.requestRollback(principal, {
        app: appConfig.name,
        env: env.name,
        to: request.body?.to,
        force: request.body?.force,
      });
      return reply
        .code(202)
        .header("location", deployUrl(deploy.id))
        .send({ deploy: deployJson(deploy) });
    },
  );
}
