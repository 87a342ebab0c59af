import type { FastifyInstance } from "fastify";
import type { ZodTypeProvider } from "fastify-type-provider-zod";
import { z } from "zod";
import { TurnoutError } from "../../domain/errors.js";
import { authorizeUnlimitedAdmin } from "../../domain/roles.js";
import { principalOf } from "../auth.js";
import type { HttpDeps } from "../deps.js";

const gcBody = z
  .object({
    dryRun: z.boolean().optional().describe("only report what would be removed (default false)"),
  })
  .strict();

/**
 * Garbage collection on demand (`turnout gc`): what retention removes from
 * the artifact store and the deploy logs, reported by kind. It acts on the
 * whole server, so it takes an admin token for every app.
 */
export function registerGcRoutes(app: FastifyInstance, { gc }: HttpDeps): void {
  const r = app.withTypeProvider<ZodTypeProvider>();

  r.post(
    "/gc",
    {
      schema: {
        tags: ["config"],
        summary: "Remove what retention no longer keeps (or, dryRun, say what would go)",
        body: gcBody.optional(),
      },
    },
    async (request) => {
      const principal = principalOf(request);
      // What retention removes belongs to every app.
      authorizeUnlimitedAdmin(principal, "collect garbage");
      if (!gc) throw new TurnoutError("E_UNAVAILABLE", "this server has no garbage collector");
      return { gc: await gc.run({ dryRun: request.body?.dryRun === true }) };
    },
  );
}
