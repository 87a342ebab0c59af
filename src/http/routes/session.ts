import type { FastifyInstance } from "fastify";
import type { ZodTypeProvider } from "fastify-type-provider-zod";
import { z } from "zod";
import { auditActor } from "../../domain/audit.js";
import { TurnoutError } from "../../domain/errors.js";
import { authorize, can } from "../../domain/roles.js";
import type { MeJson } from "../api-types.js";
import { principalOf } from "../auth.js";
import type { HttpDeps } from "../deps.js";

/** A sign-in code works once, for a minute: long enough to open a browser, too short to be worth stealing. */
export const LOGIN_CODE_LIFE_MS = 60_000;
/** The token a browser gets for a code: a working day, then sign in again. */
export const SESSION_TOKEN_LIFE_MS = 12 * 3_600_000;

const exchangeBody = z
  .object({ code: z.string().max(200).describe("the code `turnout ui` printed") })
  .strict();

/**
 * Who the caller is (so a client hides what its role may not do), and the
 * browser's sign-in: `turnout ui` on the server's machine asks for a
 * one-time code with the admin token it finds in the data directory; the
 * page exchanges it for a short-lived token of the same role and apps. The
 * code travels in the URL's fragment, which browsers never send, so it
 * appears in no server or proxy log.
 */
export function registerSessionRoutes(api: FastifyInstance, { store }: HttpDeps): void {
  const r = api.withTypeProvider<ZodTypeProvider>();

  r.get(
    "/me",
    { schema: { tags: ["session"], summary: "Who the caller is: name, role, apps" } },
    async (request) => {
      const principal = principalOf(request);
      authorize(principal, "read");
      const me: MeJson = {
        name: principal.name,
        role: principal.role,
        apps: principal.apps,
        canDeploy: can(principal, "deploy"),
        canAdmin: can(principal, "admin") && principal.apps === null,
        session: Boolean(principal.expiresAt),
        expiresAt: principal.expiresAt ?? null,
      };
      return { me };
    },
  );

  r.delete(
    "/me/session",
    {
      // Signing out gives something up: fine while the server stops.
      config: { duringShutdown: true },
      schema: {
        tags: ["session"],
        summary: "Sign out: revoke the caller's own browser token (tokens made by `turnout ui` only)",
      },
    },
    async (request) => {
      const principal = principalOf(request);
      authorize(principal, "read");
      if (!principal.expiresAt) {
        throw new TurnoutError(
          "E_CONFLICT",
          `token '${principal.name}' is not a browser sign-in; revoke it with \`turnout token revoke\` if you mean to`,
        );
      }
      await store.tokens.revoke(principal.name, auditActor(principal));
      return { revoked: principal.name };
    },
  );

  r.post(
    "/login-codes",
    {
      schema: {
        tags: ["session"],
        summary: "A one-time browser sign-in code (admins; 60 s, single use)",
      },
    },
    async (request, reply) => {
      const principal = principalOf(request);
      authorize(principal, "admin");
      const issued = await store.loginCodes.issue(principal, LOGIN_CODE_LIFE_MS);
      return reply.code(201).send(issued);
    },
  );
}

/** The exchange takes no bearer token (the code is the credential): registered outside the authenticated scope. */
export function registerLoginExchange(app: FastifyInstance, { store }: HttpDeps): void {
  const r = app.withTypeProvider<ZodTypeProvider>();
  r.post(
    "/api/v1/login-codes/exchange",
    {
      schema: {
        tags: ["session"],
        summary:
          "Exchange a sign-in code for a short-lived token (12 h, same role and apps as the code's creator)",
        security: [],
        body: exchangeBody,
      },
    },
    async (request, reply) => {
      const created = await store.loginCodes.redeem(request.body.code, SESSION_TOKEN_LIFE_MS);
      return reply.code(201).send({ token: created.token, info: created.info });
    },
  );
}
