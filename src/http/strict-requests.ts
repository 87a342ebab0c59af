import type { FastifyInstance, FastifyRequest, RouteOptions } from "fastify";
import { TurnoutError } from "../domain/errors.js";

/**
 * Requests say exactly what a route takes, nothing more: a field or a query
 * parameter the route does not know is refused (400 E_VALIDATION), never
 * silently dropped, so a typo (`{"froce": true}`) or a client speaking
 * another version fails loudly instead of doing something else.
 *
 * Two rules, enforced here for every route rather than at each route:
 * - a body or querystring schema must refuse unknown keys at every level
 *   (zod `.strict()` / `z.strictObject`): a route registered with a
 *   lenient one fails at start-up, so it cannot ship;
 * - a route with no body schema takes no body (an empty one, `{}` or `null`
 *   is no body) and a route with no querystring schema takes no query.
 * Routes that read their body themselves (webhooks: signed raw bytes;
 * artifact uploads: tar streams; git: its own protocol) say so with
 * `config: { rawBody: true }` (git also `rawQuery`) and are checked by their
 * handlers.
 */
export interface RouteRules {
  /** The handler reads the body itself. */
  rawBody?: boolean;
  /** The handler reads the query string itself (git's protocol). */
  rawQuery?: boolean;
}

declare module "fastify" {
  interface FastifyContextConfig extends RouteRules {}
}

type ZodLike = { _zod?: { def?: Record<string, unknown> } };

/** Paths (`$`, `$.refs`, …) of the objects in a zod schema that do not refuse unknown keys. */
export function lenientObjects(schema: unknown, at = "$"): string[] {
  const def = (schema as ZodLike | undefined)?._zod?.def;
  if (!def) return [];
  const child = (key: string, path = at) => lenientObjects(def[key], path);
  switch (def["type"]) {
    case "object": {
      const catchall = (def["catchall"] as ZodLike | undefined)?._zod?.def?.["type"];
      const own = catchall === "never" ? [] : [at];
      const shape = def["shape"] as Record<string, unknown>;
      return [
        ...own,
        ...Object.entries(shape).flatMap(([key, value]) => lenientObjects(value, `${at}.${key}`)),
      ];
    }
    case "optional":
    case "nullable":
    case "default":
    case "prefault":
    case "nonoptional":
    case "readonly":
    case "catch":
      return child("innerType");
    case "pipe":
      return [...child("in"), ...child("out")];
    case "array":
      return child("element", `${at}[]`);
    case "record":
      return child("valueType", `${at}.*`);
    case "union":
      return (def["options"] as unknown[]).flatMap((option) => lenientObjects(option, at));
    case "intersection":
      return [...child("left"), ...child("right")];
    case "tuple":
      return (def["items"] as unknown[]).flatMap((item, i) => lenientObjects(item, `${at}[${i}]`));
    default:
      return [];
  }
}

function rulesOf(config: unknown): RouteRules {
  return (config ?? {}) as RouteRules;
}

/** Refuses, at registration, a route whose body or querystring schema would let unknown keys through. */
function checkSchemas(route: RouteOptions): void {
  const rules = rulesOf(route.config);
  const schema = route.schema as { body?: unknown; querystring?: unknown } | undefined;
  for (const part of ["body", "querystring"] as const) {
    if (part === "body" ? rules.rawBody : rules.rawQuery) continue;
    const lenient = lenientObjects(schema?.[part]);
    if (lenient.length > 0) {
      const methods = Array.isArray(route.method) ? route.method.join(",") : route.method;
      throw new Error(
        `${methods} ${route.url}: the ${part} schema must refuse unknown keys (.strict()) at ${lenient.join(", ")}`,
      );
    }
  }
}

function isNoBody(body: unknown): boolean {
  return (
    body === undefined ||
    body === null ||
    (typeof body === "object" && !Array.isArray(body) && Object.keys(body).length === 0)
  );
}

/** GET and HEAD bodies are never read by Fastify: a declared one is refused from the headers. */
function declaresBody(request: FastifyRequest): boolean {
  const length = request.headers["content-length"];
  return (length !== undefined && length !== "0") || request.headers["transfer-encoding"] !== undefined;
}

function refuse(where: "body" | "querystring", message: string): TurnoutError {
  return new TurnoutError("E_VALIDATION", message, { issues: [{ in: where, path: "", message }] });
}

export function installStrictRequests(app: FastifyInstance): void {
  app.addHook("onRoute", checkSchemas);
  app.addHook("preValidation", async (request) => {
    // No route (404, 405): the not-found handler answers, whatever the body.
    if (request.is404) return;
    const { schema, config } = request.routeOptions;
    const rules = rulesOf(config);
    const declared = schema as { body?: unknown; querystring?: unknown } | undefined;
    if (declared?.body === undefined && !rules.rawBody) {
      const bodyless = request.method === "GET" || request.method === "HEAD";
      if (bodyless ? declaresBody(request) : !isNoBody(request.body)) {
        throw refuse("body", `${request.method} ${request.routeOptions.url} takes no request body`);
      }
    }
    if (declared?.querystring === undefined && !rules.rawQuery) {
      const names = Object.keys((request.query ?? {}) as object);
      if (names.length > 0) {
        throw refuse(
          "querystring",
          `${request.routeOptions.url} takes no query parameters (got ${names.map((n) => `'${n}'`).join(", ")})`,
        );
      }
    }
  });
}
