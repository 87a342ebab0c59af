import type { FastifyInstance } from "fastify";
import { TurnoutError } from "../domain/errors.js";

declare module "fastify" {
  interface FastifyContextConfig {
    /**
     * Served while the server shuts down although the method is not a read:
     * requests that only read (an agent's blob batch, a git fetch) or that
     * help the shutdown along (a cancel).
     */
    duringShutdown?: boolean;
  }
}

const READS = new Set(["GET", "HEAD", "OPTIONS"]);

/**
 * While the server drains (engine.shuttingDown()), every request that could
 * change something — any method but GET, HEAD and OPTIONS, on every route,
 * present and future — is refused with 503 E_UNAVAILABLE before its body is
 * read, unless its route says `config: { duringShutdown: true }`. Reads and
 * live log streams go on until the server closes. One hook for every route,
 * so a new route cannot forget it: it is refused by default.
 */
export function installShutdownGate(app: FastifyInstance, shuttingDown: () => boolean): void {
  app.addHook("onRequest", async (request) => {
    if (!shuttingDown() || READS.has(request.method)) return;
    if (request.routeOptions.config?.duringShutdown === true) return;
    throw new TurnoutError(
      "E_UNAVAILABLE",
      "the server is shutting down and takes no new work; try again when it is back (or on another server)",
    );
  });
}
