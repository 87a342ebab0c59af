import { randomUUID } from "node:crypto";
import type { IncomingMessage } from "node:http";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";

declare module "fastify" {
  interface FastifyContextConfig {
    /**
     * A request that only reads although its method is not GET (an agent's
     * blob batch: POST for its list of digests): logged at debug like reads.
     * One per host and deploy, it was an info line per host in a fleet deploy.
     */
    logAsRead?: boolean;
  }
}

/** The response header carrying each request's id (the same name is read from the request). */
export const REQUEST_ID_HEADER = "x-request-id";

/** What a caller's own id may look like: short, and nothing a log line or header could trip over. */
const WELL_FORMED = /^[A-Za-z0-9._:-]{1,128}$/;

/**
 * Each request's id: the caller's `X-Request-Id` when it is well-formed (a
 * proxy's id keeps tracing through), otherwise a new UUID.
 */
export function requestId(request: IncomingMessage): string {
  const given = request.headers[REQUEST_ID_HEADER];
  return typeof given === "string" && WELL_FORMED.test(given) ? given : randomUUID();
}

/** Called once per answered request, e.g. by the metrics. */
export type RequestObserver = (request: FastifyRequest, reply: FastifyReply, seconds: number) => void;

/**
 * Every response says its request id; every request leaves one log line when
 * answered (method, path without its query, status, time, request id): at
 * info for what changes something, at debug for reads (health checks and
 * pollers would drown the rest), at warn for 5xx. Headers, bodies and query
 * strings are never logged: they carry tokens and sign-in codes.
 */
export function installRequestLog(app: FastifyInstance, observe?: RequestObserver): void {
  app.addHook("onRequest", async (request, reply) => {
    reply.header(REQUEST_ID_HEADER, request.id);
  });
  app.addHook("onResponse", async (request, reply) => {
    const seconds = reply.elapsedTime / 1000;
    observe?.(request, reply, seconds);
    const status = reply.statusCode;
    const reading =
      request.method === "GET" ||
      request.method === "HEAD" ||
      request.method === "OPTIONS" ||
      request.routeOptions.config?.logAsRead === true;
    const level = status >= 500 ? "warn" : reading ? "debug" : "info";
    const path = request.url.split("?")[0] ?? "";
    const ms = Math.round(reply.elapsedTime);
    request.log[level](
      {
        event: "http.request",
        method: request.method,
        path,
        route: request.routeOptions.url ?? null,
        status,
        ms,
      },
      `${request.method} ${path} ${status} ${ms}ms`,
    );
  });
}
