import type { FastifyInstance } from "fastify";
import type { ZodTypeProvider } from "fastify-type-provider-zod";
import { z } from "zod";
import { AUDIT_SOURCES } from "../../domain/audit.js";
import { TurnoutError } from "../../domain/errors.js";
import { assertName } from "../../domain/names.js";
import { authorize, canSee } from "../../domain/roles.js";
import { principalOf } from "../auth.js";
import { decodeCursor, encodeCursor } from "../cursor.js";
import type { HttpDeps } from "../deps.js";

const auditQuery = z.strictObject({
  app: z.string().optional(),
  env: z.string().optional(),
  action: z
    .string()
    .regex(/^[a-z][a-z.-]{0,39}$/, "an action such as deploy, lock, token.create")
    .optional()
    .describe("only this action (deploy, rollback, deploy.cancel, lock, token.create, …)"),
  actor: z.string().min(1).max(200).optional().describe("only what this token (by name) did"),
  source: z.enum(AUDIT_SOURCES).optional(),
  since: z.string().max(40).optional().describe("ISO 8601 time: events at or after it"),
  until: z.string().max(40).optional().describe("ISO 8601 time: events before it"),
  limit: z.coerce.number().int().min(1).max(500).default(100),
  cursor: z.string().max(200).optional().describe("nextCursor of the previous page"),
});

/** An ISO 8601 date or date-time, normalised to the form the store compares (UTC, milliseconds). */
function isoTime(field: string, value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  const ms = /^\d{4}-\d{2}-\d{2}([T ][0-9:.]+(Z|[+-]\d{2}:?\d{2})?)?$/.test(value)
    ? Date.parse(value)
    : Number.NaN;
  if (!Number.isFinite(ms)) {
    throw new TurnoutError("E_VALIDATION", `${field} must be an ISO 8601 time such as 2026-01-31T12:00:00Z`, {
      [field]: value,
    });
  }
  return new Date(ms).toISOString();
}

/** The audit trail: who did what, from where, when; newest first, paged. */
export function registerAuditRoutes(app: FastifyInstance, { store }: HttpDeps): void {
  const r = app.withTypeProvider<ZodTypeProvider>();

  r.get(
    "/audit",
    {
      schema: {
        tags: ["config"],
        summary: "Audit events (every mutating action), newest first, paged with nextCursor",
        querystring: auditQuery,
      },
    },
    async (request) => {
      const principal = principalOf(request);
      const { app: appName, env, action, actor, source, limit, cursor } = request.query;
      if (appName !== undefined) assertName("app", appName);
      if (env !== undefined) assertName("environment", env);
      const since = isoTime("since", request.query.since);
      const until = isoTime("until", request.query.until);
      const before = cursor === undefined ? undefined : decodeCursor(cursor);
      authorize(principal, "read");
      // Asking for an app the token may not see finds nothing, as for an app without events.
      if (appName !== undefined && !canSee(principal, appName)) return { events: [], nextCursor: null };
      // A token limited to some apps sees only their events: not other apps',
      // nor server-wide ones such as token changes. Filtered in the query, so pages stay full.
      const rows = await store.audit.list({
        limit: limit + 1,
        ...(appName !== undefined ? { app: appName } : {}),
        ...(env !== undefined ? { env } : {}),
        ...(action !== undefined ? { action } : {}),
        ...(actor !== undefined ? { actor } : {}),
        ...(source !== undefined ? { source } : {}),
        ...(since !== undefined ? { since } : {}),
        ...(until !== undefined ? { until } : {}),
        ...(before !== undefined ? { before } : {}),
        ...(principal.apps !== null ? { apps: principal.apps } : {}),
      });
      const events = rows.slice(0, limit);
      const more = rows.length > limit;
      return { events, nextCursor: more ? encodeCursor(events[events.length - 1]!.id) : null };
    },
  );
}
