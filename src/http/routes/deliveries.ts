import type { FastifyInstance } from "fastify";
import type { ZodTypeProvider } from "fastify-type-provider-zod";
import { z } from "zod";
import { notFound } from "../../domain/errors.js";
import { NOTIFY_EVENT_KINDS } from "../../domain/notification-event.js";
import { authorize } from "../../domain/roles.js";
import { principalOf } from "../auth.js";
import { decodeCursor, encodeCursor } from "../cursor.js";
import type { HttpDeps } from "../deps.js";

const appParams = z.object({ app: z.string().describe("app name") });
const idParams = z.object({ id: z.coerce.number().int().min(1).max(Number.MAX_SAFE_INTEGER) });
const listQuery = z
  .strictObject({
    env: z.string().max(63).optional(),
    channel: z.string().max(63).optional(),
    status: z.enum(["pending", "delivered", "failed"]).optional(),
    kind: z.enum(NOTIFY_EVENT_KINDS).optional(),
    deploy: z.coerce.number().int().min(1).optional().describe("only deliveries about this deploy id"),
    limit: z.coerce.number().int().min(1).max(200).default(50),
    cursor: z.string().max(200).optional().describe("nextCursor of the previous page"),
  })
  .describe("filters");

/**
 * Notification deliveries (src/notify/): each event sent to each channel,
 * with its attempts and outcome. App-scoped: a token limited to other apps
 * gets "not found", as for an app or delivery that does not exist. Channel
 * credentials are in the server's settings, never in a delivery.
 */
export function registerDeliveryRoutes(api: FastifyInstance, { engine, store }: HttpDeps): void {
  const r = api.withTypeProvider<ZodTypeProvider>();
  r.get(
    "/apps/:app/deliveries",
    {
      schema: {
        tags: ["notifications"],
        summary: "An app's notification deliveries, newest first",
        params: appParams,
        querystring: listQuery,
      },
    },
    async (request) => {
      const principal = principalOf(request);
      const app = engine.app(principal, request.params.app, "read");
      const q = request.query;
      const rows = await store.notify.list({
        app: app.name,
        ...(q.env !== undefined ? { env: q.env } : {}),
        ...(q.channel !== undefined ? { channel: q.channel } : {}),
        ...(q.status !== undefined ? { status: q.status } : {}),
        ...(q.kind !== undefined ? { kind: q.kind } : {}),
        ...(q.deploy !== undefined ? { deployId: q.deploy } : {}),
        ...(q.cursor !== undefined ? { before: decodeCursor(q.cursor) } : {}),
        limit: q.limit + 1,
      });
      const deliveries = rows.slice(0, q.limit);
      const more = rows.length > q.limit;
      return { deliveries, nextCursor: more ? encodeCursor(deliveries[deliveries.length - 1]!.id) : null };
    },
  );
  r.get(
    "/deliveries/:id",
    {
      schema: {
        tags: ["notifications"],
        summary: "One notification delivery: its event, attempts and outcome",
        params: idParams,
      },
    },
    async (request) => {
      const principal = principalOf(request);
      const id = request.params.id;
      const hidden = () => notFound(`delivery ${id}`, { delivery: id });
      authorize(principal, "read");
      const delivery = await store.notify.get(id);
      authorize(principal, "read", delivery.app, hidden);
      return { delivery };
    },
  );
}
