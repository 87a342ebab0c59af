import type { IncomingMessage } from "node:http";
import type { Duplex } from "node:stream";
import type { FastifyInstance } from "fastify";
import type { WebSocketServer } from "ws";
import { AGENT_CONNECT_PATH } from "../../agent/protocol.js";
import { TurnoutError } from "../../domain/errors.js";
import type { AgentHub } from "../../providers/fleet/agent-hub.js";
import { bearerToken } from "../auth.js";
import type { HttpDeps } from "../deps.js";
import { rawResponse, toHttpError } from "../error-mapping.js";

/** Agent messages are small (hello, inventories, log lines); a stage manifest only goes the other way. */
const MAX_AGENT_MESSAGE = 16 * 1024 * 1024;

/**
 * `GET /api/v1/agents/connect`, upgraded to a WebSocket. Fastify does not
 * route upgrades, so this listens on the underlying server's `upgrade`
 * event. The bearer token is checked before upgrading: a bad one gets a
 * plain HTTP 401 and never a socket.
 */
export function registerAgentConnect(app: FastifyInstance, { agents }: HttpDeps): void {
  // A plain GET (no Upgrade header) reaches Fastify: tell the caller what this endpoint wants.
  app.get(AGENT_CONNECT_PATH, { schema: { hide: true } }, async (_request, reply) =>
    reply
      .code(426)
      .header("upgrade", "websocket")
      .send({
        error: {
          code: "E_BAD_REQUEST",
          message: "this endpoint takes a WebSocket upgrade from turnout agent",
        },
      }),
  );
  if (!agents) return;

  // ws (some 15 MB and 90 ms to load) is loaded when the first agent connects:
  // a server without a fleet never does.
  let wss: WebSocketServer | undefined;
  const server = async () => {
    if (!wss) {
      const { WebSocketServer } = await import("ws");
      wss ??= new WebSocketServer({ noServer: true, maxPayload: MAX_AGENT_MESSAGE });
    }
    return wss;
  };
  app.server.on("upgrade", (request: IncomingMessage, socket: Duplex, head: Buffer) => {
    const pathname = (request.url ?? "/").split("?")[0]!.replace(/\/+$/, "");
    if (pathname !== AGENT_CONNECT_PATH) {
      // Nobody else takes upgrades: answer instead of leaving the socket hanging.
      if (app.server.listenerCount("upgrade") === 1) {
        refuse(socket, new TurnoutError("E_NOT_FOUND", `no WebSocket endpoint at ${pathname}`));
      }
      return;
    }
    socket.on("error", () => socket.destroy());
    upgrade(agents, server, request, socket, head).catch((error: unknown) => refuse(socket, error));
  });
  app.addHook("preClose", async () => {
    for (const client of wss?.clients ?? []) client.terminate();
  });
}

async function upgrade(
  agents: AgentHub,
  wss: () => Promise<WebSocketServer>,
  request: IncomingMessage,
  socket: Duplex,
  head: Buffer,
): Promise<void> {
  const token = bearerToken(request.headers.authorization);
  if (!token) {
    throw new TurnoutError("E_UNAUTHORIZED", "missing bearer token: send 'Authorization: Bearer <token>'");
  }
  const auth = await agents.authenticate(token);
  if (!auth) throw new TurnoutError("E_UNAUTHORIZED", "invalid or revoked token");
  const server = await wss();
  if (socket.destroyed) return;
  server.handleUpgrade(request, socket, head, (ws) => agents.accept(ws, auth));
}

/** An HTTP error response on a socket that was never upgraded. */
function refuse(socket: Duplex, error: unknown): void {
  if (socket.destroyed) return;
  socket.end(rawResponse(toHttpError(error)));
}
