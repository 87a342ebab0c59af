import type { FastifyInstance, RouteOptions } from "fastify";

/**
 * Which methods a path takes, for the 405 answer to a known path asked with
 * another method (Fastify itself answers 404 for both cases). Filled from the
 * routes as they are registered, so it cannot drift from what is served.
 */
export class AllowedMethods {
  private readonly routes: { pattern: RegExp; methods: string[] }[] = [];

  /** Listens to route registrations; call before routes are added. */
  install(app: FastifyInstance): void {
    app.addHook("onRoute", (route: RouteOptions) => {
      const methods = Array.isArray(route.method) ? route.method : [route.method];
      this.routes.push({ pattern: patternOf(route.url ?? ""), methods: methods.map((m) => m.toUpperCase()) });
    });
  }

  /** The methods served at `path` (sorted), empty when no route has that path. */
  at(path: string): string[] {
    const found = new Set<string>();
    for (const route of this.routes) {
      if (route.pattern.test(path)) for (const method of route.methods) found.add(method);
    }
    return [...found].sort();
  }
}

/** `/apps/:app/x` → `^/apps/[^/]+/x/?$`: a path parameter is one non-empty segment. */
function patternOf(url: string): RegExp {
  const source = url
    .split("/")
    .map((segment) => {
      if (segment === "*") return ".*";
      return segment
        .split(/(:[A-Za-z0-9_]+)/)
        .map((part) => (part.startsWith(":") ? "[^/]+" : part.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")))
        .join("");
    })
    .join("/");
  return new RegExp(`^${source.replace(/\/$/, "")}/?$`);
}
