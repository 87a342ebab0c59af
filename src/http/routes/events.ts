import type { ServerResponse } from "node:http";
import type { FastifyInstance } from "fastify";
import type { Change } from "../../domain/dashboard.js";
import { authorize, canSee, type Principal } from "../../domain/roles.js";
import { principalOf } from "../auth.js";
import type { HttpDeps } from "../deps.js";
import type { SseTiming } from "../sse.js";

export interface EventRouteOptions {
  timing: SseTiming;
}

/** Whether a caller may hear about a change: only its own apps' (host changes carry no app, and no data). */
export function visibleChange(principal: Principal, change: Change): boolean {
  if (change.type === "hosts") return true;
  return canSee(principal, change.app);
}

/**
 * `GET /api/v1/events`: a live stream (Server-Sent Events) of hints about
 * what changed — deploys created or moving through their phases, locks,
 * undeployed commits, hosts — for pages that stay open. Each event says what
 * to read again, not the new state, so events carry no ids and a client that
 * reconnects simply reads everything again (nothing is replayed).
 */
export function registerEventRoutes(
  api: FastifyInstance,
  { engine }: HttpDeps,
  { timing }: EventRouteOptions,
): void {
  const open = new Set<() => void>();
  api.addHook("preClose", async () => {
    for (const close of [...open]) close();
  });

  api.get(
    "/events",
    {
      schema: {
        tags: ["events"],
        summary: "Live hints of what changed (SSE): deploys, locks, undeployed commits, hosts",
        description:
          "Events: `ready` once subscribed; `change` with data {type: deploy|lock|undeployed|pipeline|hosts, app?, env?, …}. " +
          "Only the caller's apps. No ids and no replay: after a reconnect, read again what the page shows.",
      },
    },
    async (request, reply) => {
      const principal = principalOf(request);
      authorize(principal, "read");
      reply.hijack();
      const response: ServerResponse = reply.raw;
      response.writeHead(200, {
        "content-type": "text/event-stream; charset=utf-8",
        "cache-control": "no-cache, no-transform",
        connection: "keep-alive",
        "x-accel-buffering": "no",
      });
      const write = (text: string) => {
        if (!response.writableEnded) response.write(text);
      };
      const timers: NodeJS.Timeout[] = [];
      let unsubscribe = () => {};
      const close = () => {
        if (!open.delete(close)) return;
        for (const timer of timers) clearTimeout(timer);
        unsubscribe();
        if (!response.writableEnded) response.end();
      };
      open.add(close);
      response.on("close", close);
      unsubscribe = engine.changes((change) => {
        if (visibleChange(principal, change)) write(`event: change\ndata: ${JSON.stringify(change)}\n\n`);
      });
      // A token that expires ends its streams too; the client then asks to sign in again.
      if (principal.expiresAt) {
        const left = Date.parse(principal.expiresAt) - Date.now();
        timers.push(setTimeout(close, Math.max(0, Math.min(left, 2_147_000_000))));
      }
      const heartbeat = setInterval(() => write(": keep-alive\n\n"), timing.heartbeatMs);
      timers.push(heartbeat as unknown as NodeJS.Timeout);
      write(`retry: 2000\nevent: ready\ndata: {}\n\n`);
      return reply;
    },
  );
}
