import type { FastifyInstance } from "fastify";
import type { ZodTypeProvider } from "fastify-type-provider-zod";
import { z } from "zod";
import { assertHostName } from "../../agent/protocol.js";
import { notFound } from "../../domain/errors.js";
import { assertName } from "../../domain/names.js";
import { authorize } from "../../domain/roles.js";
import { principalOf } from "../auth.js";
import type { HttpDeps } from "../deps.js";
import { visibleHosts } from "../visibility.js";

const hostParams = z.object({ name: z.string().describe("host name") });
const historyQuery = z
  .object({
    limit: z.coerce.number().int().min(1).max(500).default(50).describe("at most this many (default 50)"),
    app: z.string().optional().describe("only this app's deploys"),
  })
  .strict();

/**
 * `GET /api/v1/hosts/:name/history`: what a host ran over time — every
 * fleet deploy that reached it (rollbacks, reconciles and self-heals are
 * deploys too), newest first, with the release it was sent, how far it got,
 * when its `current` switched and the deploy's commit. A token limited to some apps sees
 * only those apps' deploys, and only hosts serving them (any other host is
 * "not found", as in GET /hosts/:name).
 */
export function registerHostHistoryRoutes(api: FastifyInstance, { engine, store }: HttpDeps): void {
  const r = api.withTypeProvider<ZodTypeProvider>();
  r.get(
    "/hosts/:name/history",
    {
      schema: {
        tags: ["hosts"],
        summary: "The fleet deploys that reached a host, newest first",
        params: hostParams,
        querystring: historyQuery,
      },
    },
    async (request) => {
      const principal = principalOf(request);
      authorize(principal, "read");
      const name = assertHostName(request.params.name);
      const found = await store.hosts.get(name);
      const [host] = found ? visibleHosts(principal, [found], engine.config()) : [];
      if (!host) throw notFound(`host '${name}'`, { host: name });
      const app = request.query.app === undefined ? undefined : assertName("app", request.query.app);
      return { history: await store.hostHistory.ofHost(name, principal.apps, request.query.limit, app) };
    },
  );
}
