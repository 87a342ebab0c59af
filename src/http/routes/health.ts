import type { FastifyInstance } from "fastify";

/** Liveness for load balancers and the CLI; no token needed. */
export function registerHealthRoutes(app: FastifyInstance, version: string): void {
  app.get(
    "/healthz",
    { schema: { tags: ["server"], summary: "Liveness and version", security: [] } },
    async () => ({ ok: true, version }),
  );
}
