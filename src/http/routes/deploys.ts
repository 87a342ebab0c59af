import type { FastifyInstance } from "fastify";
import type { ZodTypeProvider } from "fastify-type-provider-zod";
import { z } from "zod";
import { DEPLOY_STATUSES, type Deploy } from "../../domain/deploy.js";
import { assertName } from "../../domain/names.js";
import { authorize, canSee, type Principal } from "../../domain/roles.js";
import type { Store } from "../../store/store.js";
import { principalOf } from "../auth.js";
import { decodeCursor, encodeCursor } from "../cursor.js";
import { findDeploy } from "../deploy-lookup.js";
import type { HttpDeps } from "../deps.js";
import { deployIdParams } from "../schemas.js";
import { deployJson } from "../serializers.js";

const listQuery = z.strictObject({
  app: z.string().optional(),
  env: z.string().optional(),
  status: z.enum(DEPLOY_STATUSES).optional(),
  limit: z.coerce.number().int().min(1).max(200).default(50),
  cursor: z.string().max(200).optional().describe("nextCursor of the previous page"),
});

// A token limited to some apps pages through the table and keeps only its
// apps; the scan is bounded so a page costs at most this many rows, and the
// cursor then points past what was scanned (the page may come back short).
const SCAN_BATCH = 200;
const SCAN_LIMIT = 5000;

interface Page {
  deploys: Deploy[];
  nextCursor: string | null;
}

async function listPage(
  store: Store,
  principal: Principal,
  filter: { app?: string; env?: string; status?: Deploy["status"] },
  limit: number,
  before: number | undefined,
): Promise<Page> {
  // Filtering by an app the token may not see finds nothing, as for an app that never deployed.
  if (filter.app !== undefined && !canSee(principal, filter.app)) return { deploys: [], nextCursor: null };
  const allowed = principal.apps;
  if (allowed === null || filter.app !== undefined) {
    // One extra row tells whether there is a next page.
    const rows = await store.deploys.list({ ...filter, before, limit: limit + 1 });
    const deploys = rows.slice(0, limit);
    const more = rows.length > limit;
    return { deploys, nextCursor: more ? encodeCursor(deploys[deploys.length - 1]!.id) : null };
  }
  const deploys: Deploy[] = [];
  let cursor = before;
  let scanned = 0;
  while (scanned < SCAN_LIMIT) {
    const rows = await store.deploys.list({ ...filter, before: cursor, limit: SCAN_BATCH });
    scanned += rows.length;
    for (const row of rows) {
      cursor = row.id;
      if (!allowed.includes(row.app)) continue;
      if (deploys.length === limit) return { deploys, nextCursor: encodeCursor(deploys[limit - 1]!.id) };
      deploys.push(row);
    }
    if (rows.length < SCAN_BATCH) return { deploys, nextCursor: null };
  }
  return { deploys, nextCursor: cursor === undefined ? null : encodeCursor(cursor) };
}

/** Deploys across environments: listing, one deploy, cancelling. */
export function registerDeployRoutes(app: FastifyInstance, { engine, store }: HttpDeps): void {
  const r = app.withTypeProvider<ZodTypeProvider>();

  r.get(
    "/deploys",
    {
      schema: {
        tags: ["deploys"],
        summary: "Deploys, newest first, paged with nextCursor",
        querystring: listQuery,
      },
    },
    async (request) => {
      const principal = principalOf(request);
      const { app: appName, env, status, limit, cursor } = request.query;
      if (appName !== undefined) assertName("app", appName);
      if (env !== undefined) assertName("environment", env);
      authorize(principal, "read");
      const before = cursor === undefined ? undefined : decodeCursor(cursor);
      const filter = {
        ...(appName !== undefined ? { app: appName } : {}),
        ...(env !== undefined ? { env } : {}),
        ...(status !== undefined ? { status } : {}),
      };
      const page = await listPage(store, principal, filter, limit, before);
      return { deploys: page.deploys.map(deployJson), nextCursor: page.nextCursor };
    },
  );

  r.get(
    "/deploys/:id",
    { schema: { tags: ["deploys"], summary: "One deploy", params: deployIdParams } },
    async (request) => {
      const deploy = await findDeploy(engine, principalOf(request), request.params.id, "read");
      // The timeline comes with the deploy: one request renders the deploy page's header.
      return { deploy: deployJson(deploy), phases: await store.phases.list(deploy.id) };
    },
  );

  r.post(
    "/deploys/:id/cancel",
    {
      // A cancel during a shutdown leaves one deploy fewer to wait for.
      config: { duringShutdown: true },
      schema: {
        tags: ["deploys"],
        summary: "Cancel a queued or running deploy (202)",
        params: deployIdParams,
      },
    },
    async (request, reply) => {
      const principal = principalOf(request);
      const found = await findDeploy(engine, principal, request.params.id, "deploy");
      const deploy = await engine.cancel(principal, found.id);
      return reply.code(202).send({ deploy: deployJson(deploy) });
    },
  );
}
