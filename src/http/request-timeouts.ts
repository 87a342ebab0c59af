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
 * The clock starts with the headers (onRequest), so a body the server never
 * reads — a request refused before its body was parsed, a 401 say, which
 * Node then reads to discard — is bounded too. Where the body is read, it is
 * watched on its way through (a pass-through stream set in preParsing, which
 * everything that reads the body reads), never read twice; a body that fails
 * the rule ends there in E_REQUEST_TIMEOUT (408, the connection closed after
 * it), so the answer goes through the usual error handling. A request that
 * was already answered has its connection closed instead.
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

const WATCH = Symbol("turnout.body-watch");
type Watched = FastifyRequest & { [WATCH]?: { body?: WatchedBody } };

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
  app.addHook("onRequest", async (raw) => {
    const request = raw as Watched;
    if (!declaresBody(request)) return;
    const message = request.raw as IncomingMessage;
    const watch: { body?: WatchedBody } = {};
    request[WATCH] = watch;

    const expire = () => {
      if (message.complete) return;
      const body = watch.body;
      if (body && !body.destroyed) {
        message.unpipe(body);
        // The client gets its answer (the error handler closes the connection); nothing more is read.
        message.pause();
        body.destroy(requestTimeoutError());
      } else {
        // Answered already (or never to be parsed): nothing to say, the connection goes.
        message.socket?.destroy();
      }
    };
    let timer: NodeJS.Timeout;
    if (request.routeOptions.config?.streamedBody && limits.minRate > 0) {
      let seen = 0;
      const perWindow = (limits.minRate * limits.bodyTimeoutMs) / 1000;
      timer = setInterval(() => {
        const received = watch.body?.received ?? 0;
        const moved = received - seen;
        seen = received;
        // Unread data waiting in the pass-through: the server is behind, not the client.
        if (moved < perWindow && (watch.body?.readableLength ?? 0) === 0) expire();
      }, limits.bodyTimeoutMs);
    } else if (!request.routeOptions.config?.streamedBody) {
      timer = setTimeout(expire, limits.bodyTimeoutMs);
    } else {
      return;
    }
    timer.unref();
    const done = () => {
      clearTimeout(timer);
      clearInterval(timer);
    };
    message.once("end", done);
    message.once("close", done);
  });

  app.addHook("preParsing", async (raw, _reply, payload) => {
    const request = raw as Watched;
    const watch = request[WATCH];
    // Fastify hands the raw request here; anything else is another hook's stream, left alone.
    if (!watch || payload !== request.raw) return payload;
    const message = request.raw as IncomingMessage;
    const body = new WatchedBody();
    watch.body = body;
    // Whoever reads the body hears of its error; but a reader may have stopped
    // (a body over the size limit is answered 413 unread), and an error nobody
    // listens for would be an uncaught exception: the whole server down.
    body.on("error", () => {});
    message.pipe(body);
    const gone = () => {
      if (!message.complete) body.destroy(aborted());
    };
    message.once("close", gone);
    body.once("close", () => message.off("close", gone));
    return body;
  });
}
