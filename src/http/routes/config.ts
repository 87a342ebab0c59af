import type { FastifyInstance } from "fastify";
import type { ZodTypeProvider } from "fastify-type-provider-zod";
import { z } from "zod";
import { assertName } from "../../domain/names.js";
import { authorize, canSee } from "../../domain/roles.js";
import { principalOf } from "../auth.js";
import type { HttpDeps } from "../deps.js";
import { visibleProblems } from "../visibility.js";

const auditQuery = z.strictObject({
  app: z.string().optional(),
  env: z.string().optional(),
  limit: z.coerce.number().int().min(1).max(500).default(100),
});

/** The active configuration and the audit trail: what the server runs on and who changed what. */
export function registerConfigRoutes(app: FastifyInstance, { engine, store }: HttpDeps): void {
  const r = app.withTypeProvider<ZodTypeProvider>();

  r.get(
    "/config",
    {
      schema: {
        tags: ["config"],
        summary:
          "Where the configuration comes from, its active revision, its problems, the last refused one",
      },
    },
    async (request) => {
      const principal = principalOf(request);
      authorize(principal, "read");
      const { source, revision, loadedAt, problems, lastError, loading } = engine.configStatus();
      // A token limited to some apps sees only their manifests' problems.
      return {
        source,
        revision,
        loadedAt,
        problems: visibleProblems(principal, problems),
        lastError: lastError && { ...lastError, problems: visibleProblems(principal, lastError.problems) },
        loading: loading.filter((entry) => canSee(principal, entry.app)),
      };
    },
  );

  r.get(
    "/audit",
    { schema: { tags: ["config"], summary: "Audit events, newest first", querystring: auditQuery } },
    async (request) => {
      const principal = principalOf(request);
      const { app: appName, env, limit } = request.query;
      if (appName !== undefined) assertName("app", appName);
      if (env !== undefined) assertName("environment", env);
      authorize(principal, "read");
      // Asking for an app the token may not see finds nothing, as for an app without events.
      if (appName !== undefined && !canSee(principal, appName)) return { events: [] };
      const events = await store.audit.list({
        limit,
        ...(appName !== undefined ? { app: appName } : {}),
        ...(env !== undefined ? { env } : {}),
      });
      // A token limited to some apps sees only their events: not other apps',
      // nor server-wide ones such as token changes.
      const allowed = principal.apps;
      return {
        events: allowed === null ? events : events.filter((e) => e.app !== null && allowed.includes(e.app)),
      };
    },
  );
}
