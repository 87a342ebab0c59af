import type { IncomingMessage } from "node:http";
import { Transform, type TransformCallback } from "node:stream";
import type { FastifyInstance, FastifyRequest } from "fastify";
import { TurnoutError } from "../domain/errors.js";

/**
 * Request bodies that do not arrive in time. Node's own `requestTimeout`
 * would cut every request at one deadline, long uploads included, and answer
 * without Turnout's error body; so it stays off and this takes its place:
 *
 * - a JSON body (the default) must arrive whole within `bodyTimeoutMs` of
 *   its headers;
 * - a streamed body (routes with `config: { streamedBody: true }`: artifact
 *   uploads, git pushes) has no overall deadline but must keep arriving: at
 *   least `minRate` bytes a second over every `bodyTimeoutMs` window, except
 *   while the server itself is the slow side (its reader is behind).
 *
 * The body is watched on its way through (a pass-through stream set in
 * preParsing, which everything that reads the body reads), never read twice.
 * A body that fails the rule ends in E_REQUEST_TIMEOUT (408, the connection
 * closed after it), raised where the body is read, so the answer goes
 * through the usual error handling.
 */
export interface BodyTimeouts {
  bodyTimeoutMs: number;
  /** Bytes per second a streamed body must keep up. */
  minRate: number;
}

declare module "fastify" {
  interface FastifyContextConfig {
    /** The body may take as long as it needs while it keeps moving (see request-timeouts.ts). */
    streamedBody?: boolean;
  }
}

/** Counts what passes; the request's body as the route sees it. */
class WatchedBody extends Transform {
  received = 0;

  override _transform(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
    this.received += chunk.length;
    done(null, chunk);
  }
}

function declaresBody(request: FastifyRequest): boolean {
  const length = request.headers["content-length"];
  return (length !== undefined && length !== "0") || request.headers["transfer-encoding"] !== undefined;
}

export function requestTimeoutError(): TurnoutError {
  return new TurnoutError(
    "E_REQUEST_TIMEOUT",
    "the request body did not arrive in time: the connection is closed",
  );
}

function aborted(): Error {
  return Object.assign(new Error("the client went away before its body was complete"), {
    code: "ECONNRESET",
  });
}

export function installBodyTimeouts(app: FastifyInstance, limits: BodyTimeouts): void {
  app.addHook("preParsing", async (request, reply, payload) => {
    // GET and HEAD bodies are never read (and refused, see strict-requests.ts).
    if (!declaresBody(request) || request.method === "GET" || request.method === "HEAD") return payload;
    const raw = request.raw as IncomingMessage;
    // Fastify hands the raw request here; anything else is another hook's stream, left alone.
    if (payload !== raw) return payload;
    const body = new WatchedBody();
    raw.pipe(body);
    const gone = () => {
      if (!raw.complete) body.destroy(aborted());
    };
    raw.once("close", gone);

    const stop = (error: Error) => {
      raw.unpipe(body);
      // The client gets its answer (the error handler closes the connection); nothing more is read.
      raw.pause();
      body.destroy(error);
    };
    let timer: NodeJS.Timeout;
    if (request.routeOptions.config.streamedBody) {
      let seen = 0;
      const perWindow = (limits.minRate * limits.bodyTimeoutMs) / 1000;
      timer = setInterval(() => {
        const moved = body.received - seen;
        seen = body.received;
        // Unread data waiting in the pass-through: the server is behind, not the client.
        if (moved < perWindow && body.readableLength === 0) stop(requestTimeoutError());
      }, limits.bodyTimeoutMs);
    } else {
      timer = setTimeout(() => stop(requestTimeoutError()), limits.bodyTimeoutMs);
    }
    const done = () => {
      clearTimeout(timer);
      clearInterval(timer);
      raw.off("close", gone);
    };
    // The whole body was received (read or not): nothing left to wait for.
    body.once("finish", done);
    body.once("close", done);
    reply.raw.once("close", done);
    return body;
  });
}
