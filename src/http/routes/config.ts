import type { FastifyInstance } from "fastify";
import type { ZodTypeProvider } from "fastify-type-provider-zod";
import { authorize, canSee } from "../../domain/roles.js";
import { principalOf } from "../auth.js";
import type { HttpDeps } from "../deps.js";
import { visibleProblems } from "../visibility.js";

/** The active configuration: what the server runs on. (The audit trail is in audit.ts.) */
export function registerConfigRoutes(app: FastifyInstance, { engine }: HttpDeps): void {
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
}
