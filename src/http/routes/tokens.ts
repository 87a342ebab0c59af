import type { FastifyInstance } from "fastify";
import type { ZodTypeProvider } from "fastify-type-provider-zod";
import { z } from "zod";
import { auditActor } from "../../domain/audit.js";
import { TurnoutError } from "../../domain/errors.js";
import { parseLabelGrant } from "../../domain/host-grant.js";
import { assertName } from "../../domain/names.js";
import { authorizeUnlimitedAdmin, type Principal, ROLES } from "../../domain/roles.js";
import { principalOf } from "../auth.js";
import type { HttpDeps } from "../deps.js";

const createBody = z.strictObject({
  name: z.string().describe("unique token name"),
  role: z.enum(ROLES),
  apps: z
    .array(z.string())
    .min(1)
    .max(1000)
    .optional()
    .describe(
      "limit the token to these apps; default: every app. An agent token grants these apps to the hosts enrolled with it",
    ),
  labels: z
    .array(z.string())
    .max(1000)
    .nullable()
    .optional()
    .describe(
      "agent tokens only: the `key=value` labels hosts enrolled with it are granted (a host's other labels count " +
        "for nothing); default: none; null: whatever the host declares (unrestricted)",
    ),
});

const nameParams = z.object({ name: z.string() });

/**
 * Managing tokens takes an admin token for every app: an admin limited to
 * some apps could otherwise mint itself an unlimited token.
 */
const authorizeTokenAdmin = (principal: Principal) => authorizeUnlimitedAdmin(principal, "manage tokens");

export function registerTokenRoutes(app: FastifyInstance, { store }: HttpDeps): void {
  const r = app.withTypeProvider<ZodTypeProvider>();

  r.post(
    "/tokens",
    { schema: { tags: ["tokens"], summary: "Create a token (shown once)", body: createBody } },
    async (request, reply) => {
      const principal = principalOf(request);
      authorizeTokenAdmin(principal);
      const { name, role, apps, labels } = request.body;
      assertName("token", name);
      for (const appName of apps ?? []) assertName("app", appName);
      if (labels !== undefined && role !== "agent") {
        throw new TurnoutError("E_VALIDATION", "only agent tokens grant labels", { role });
      }
      const created = await store.tokens.create({
        name,
        role,
        apps: apps === undefined ? null : [...new Set(apps)],
        labels: labels === undefined ? [] : labels === null ? null : parseLabelGrant(labels),
        createdBy: auditActor(principal),
      });
      return reply.code(201).send({ token: created.token, info: created.info });
    },
  );

  r.get(
    "/tokens",
    { schema: { tags: ["tokens"], summary: "Every token (never the secret)" } },
    async (request) => {
      authorizeTokenAdmin(principalOf(request));
      return { tokens: await store.tokens.list() };
    },
  );

  r.delete(
    "/tokens/:name",
    { schema: { tags: ["tokens"], summary: "Revoke a token", params: nameParams } },
    async (request) => {
      const principal = principalOf(request);
      authorizeTokenAdmin(principal);
      const name = assertName("token", request.params.name);
      await store.tokens.revoke(name, auditActor(principal));
      return { revoked: name };
    },
  );
}
