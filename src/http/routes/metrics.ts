import type { FastifyInstance } from "fastify";
import { TurnoutError } from "../../domain/errors.js";
import { authorize } from "../../domain/roles.js";
import { authenticator, principalOf } from "../auth.js";
import type { HttpDeps } from "../deps.js";

/** What GET /metrics serves: Prometheus's text format. */
export interface MetricsText {
  contentType: string;
  text(): Promise<string>;
}

/**
 * GET /metrics on the API's address: needs a token (any role that reads)
 * not limited to some apps, since the metrics name every app. A Prometheus
 * that cannot send a token scrapes the separate `--metrics-listen` address
 * instead (src/server/metrics-listener.ts).
 */
export async function registerMetricsRoute(app: FastifyInstance, deps: HttpDeps): Promise<void> {
  const metrics = deps.metrics;
  if (!metrics) return;
  await app.register(async (scope) => {
    scope.addHook("onRequest", authenticator(deps.store));
    scope.get(
      "/metrics",
      { schema: { tags: ["server"], summary: "Prometheus metrics (docs/operations.md#metrics)" } },
      async (request, reply) => {
        const principal = principalOf(request);
        authorize(principal, "read");
        if (principal.apps !== null) {
          throw new TurnoutError(
            "E_FORBIDDEN",
            `token '${principal.name}' is limited to some apps and may not read the metrics (they cover every app)`,
          );
        }
        reply.header("content-type", metrics.contentType);
        return metrics.text();
      },
    );
  });
}
