import { STATUS_CODES } from "node:http";
import type { Socket } from "node:net";
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { type ErrorCode, isTurnoutError, TurnoutError } from "../domain/errors.js";
import type { AllowedMethods } from "./allowed-methods.js";

/**
 * The one place where error codes become HTTP statuses. Domain and engine code
 * throw TurnoutErrors with stable codes; Fastify and Node's HTTP server raise
 * their own errors for transport problems (bad JSON, schema mismatch, oversized
 * bodies, unknown routes and methods, long URLs, malformed requests, timeouts).
 * All of them end up here as `{"error": {code, message, details?}}`, so clients
 * parse a single shape whatever went wrong. Each code has one status.
 */
export interface ErrorBody {
  error: { code: ErrorCode; message: string; details?: Record<string, unknown> };
}

export interface HttpError {
  status: number;
  body: ErrorBody;
  headers: Record<string, string>;
}

// Malformed requests are 400; well-formed requests naming something invalid
// (a name, a ref, a parameter) are 422, so a client can tell "fix your
// client" from "fix your input".
const STATUS: Record<ErrorCode, number> = {
  E_BAD_REQUEST: 400,
  E_VALIDATION: 400,
  E_INVALID_NAME: 422,
  E_INVALID_REF: 422,
  E_INVALID_PARAM: 422,
  E_REF_NOT_FOUND: 422,
  E_UNAUTHORIZED: 401,
  E_FORBIDDEN: 403,
  E_EMERGENCY_NOT_ALLOWED: 403,
  E_PROVIDER_UNSUPPORTED: 422,
  E_NOT_FOUND: 404,
  E_METHOD_NOT_ALLOWED: 405,
  E_REQUEST_TIMEOUT: 408,
  E_LOCKED: 409,
  E_OUTSIDE_WINDOW: 409,
  E_COMMIT_LOCKED: 409,
  E_CONFLICT: 409,
  E_NOT_CANCELLABLE: 409,
  E_NO_RELEASE: 409,
  E_PROMOTION_REQUIRED: 409,
  E_PROMOTION_TOO_EARLY: 409,
  E_INVALID_MANIFEST: 409,
  E_PAYLOAD_TOO_LARGE: 413,
  E_URI_TOO_LONG: 414,
  E_UNSUPPORTED_MEDIA_TYPE: 415,
  E_RATE_LIMITED: 429,
  E_HEADERS_TOO_LARGE: 431,
  E_GIT: 502,
  E_ARTIFACT_STORE: 502,
  E_UNAVAILABLE: 503,
  E_CONFIG: 500,
  E_INTERNAL: 500,
};

export const GENERIC_MESSAGE = "internal error";

/** The longest path segment the router takes; longer ones are 414 E_URI_TOO_LONG. */
export const MAX_PARAM_LENGTH = 1024;

export function statusOf(code: ErrorCode): number {
  return STATUS[code];
}

function make(code: ErrorCode, message: string, details?: Record<string, unknown>): HttpError {
  const headers: Record<string, string> = {};
  if (code === "E_UNAUTHORIZED") headers["www-authenticate"] = 'Bearer realm="turnout"';
  const body: ErrorBody =
    details === undefined ? { error: { code, message } } : { error: { code, message, details } };
  return { status: STATUS[code], body, headers };
}

/**
 * Fastify's own request errors, by their code: what Turnout calls them. The
 * messages are ours, so no framework wording or internal detail leaks out.
 */
const FRAMEWORK: Record<string, [ErrorCode, string]> = {
  FST_ERR_CTP_BODY_TOO_LARGE: ["E_PAYLOAD_TOO_LARGE", "request body is too large"],
  FST_ERR_CTP_INVALID_MEDIA_TYPE: [
    "E_UNSUPPORTED_MEDIA_TYPE",
    "unsupported content type: send application/json",
  ],
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: [
    "E_BAD_REQUEST",
    "the body's length does not match its Content-Length",
  ],
  FST_ERR_CTP_EMPTY_JSON_BODY: ["E_BAD_REQUEST", "malformed JSON body: it is empty"],
  FST_ERR_CTP_INVALID_JSON_BODY: ["E_BAD_REQUEST", "malformed JSON body"],
  FST_ERR_BAD_URL: ["E_BAD_REQUEST", "malformed URL: a path segment is not valid percent-encoding"],
  FST_ERR_INVALID_URL: ["E_BAD_REQUEST", "malformed URL"],
  FST_ERR_MAX_PARAM_LENGTH: [
    "E_URI_TOO_LONG",
    `a path segment is longer than ${MAX_PARAM_LENGTH} characters (names are at most 63)`,
  ],
  FST_ERR_NOT_FOUND: ["E_NOT_FOUND", "not found"],
  // A client that went away mid-body: nobody reads the answer, but it is still ours.
  ECONNRESET: ["E_BAD_REQUEST", "the request was aborted before its body was complete"],
  ECONNABORTED: ["E_BAD_REQUEST", "the request was aborted before its body was complete"],
  ERR_STREAM_PREMATURE_CLOSE: ["E_BAD_REQUEST", "the request was aborted before its body was complete"],
};

/** Any thrown value → the response to send; `internal` is true when the real error must only be logged. */
export function toHttpError(error: unknown): HttpError & { internal: boolean } {
  if (isTurnoutError(error)) {
    // E_INTERNAL carries messages written for operators, not clients.
    if (error.code === "E_INTERNAL") return { ...make("E_INTERNAL", GENERIC_MESSAGE), internal: true };
    return { ...make(error.code, error.message, error.details), internal: false };
  }
  const fastifyError = error as Partial<FastifyError> & { validation?: unknown; validationContext?: string };
  if (Array.isArray(fastifyError.validation)) {
    const where = fastifyError.validationContext ?? "request";
    const issues = fastifyError.validation.map((issue: { instancePath?: string; message?: string }) => ({
      in: where,
      path: issue.instancePath ?? "",
      message: issue.message ?? "invalid",
    }));
    const first = issues[0];
    const message = first
      ? `invalid ${where}${first.path && first.path !== "/" ? ` at ${first.path}` : ""}: ${first.message}`
      : `invalid ${where}`;
    return { ...make("E_VALIDATION", message, { issues }), internal: false };
  }
  const known = fastifyError.code === undefined ? undefined : FRAMEWORK[fastifyError.code];
  if (known) return { ...make(known[0], known[1]), internal: false };
  const status = fastifyError.statusCode;
  if (typeof status === "number" && status >= 400 && status < 500) {
    // Another client error of the framework (their messages are safe to show): a 400 E_BAD_REQUEST.
    return { ...make("E_BAD_REQUEST", fastifyError.message || "bad request"), internal: false };
  }
  return { ...make("E_INTERNAL", GENERIC_MESSAGE), internal: true };
}

export function sendError(reply: FastifyReply, error: HttpError): FastifyReply {
  return reply.code(error.status).headers(error.headers).send(error.body);
}

/**
 * A whole HTTP/1.1 response for a socket outside Fastify's reach (a request
 * Node could not parse, a refused WebSocket upgrade); the connection closes
 * after it.
 */
export function rawResponse(error: HttpError): string {
  const body = JSON.stringify(error.body);
  const headers = [
    `HTTP/1.1 ${error.status} ${STATUS_CODES[error.status] ?? "Error"}`,
    "Connection: close",
    "Content-Type: application/json; charset=utf-8",
    `Content-Length: ${Buffer.byteLength(body)}`,
    ...Object.entries(error.headers).map(([k, v]) => `${k}: ${v}`),
  ];
  return `${headers.join("\r\n")}\r\n\r\n${body}`;
}

/**
 * Node's HTTP parser errors (the `clientError` event): requests that never
 * became a request Fastify could route. Node's own answer would be a bare
 * status line; this one is a Turnout error body.
 */
function clientErrorOf(error: NodeJS.ErrnoException): HttpError {
  switch (error.code) {
    case "ERR_HTTP_REQUEST_TIMEOUT":
      return make(
        "E_REQUEST_TIMEOUT",
        "the request (its headers, or its body) did not arrive in time: the connection is closed",
      );
    case "HPE_HEADER_OVERFLOW":
      return make("E_HEADERS_TOO_LARGE", "the request line and headers are too large (at most 16 KiB)");
    case "HPE_INVALID_CONTENT_LENGTH":
    case "HPE_UNEXPECTED_CONTENT_LENGTH":
      return make("E_BAD_REQUEST", "invalid Content-Length header");
    case "HPE_INVALID_TRANSFER_ENCODING":
    case "HPE_INVALID_CHUNK_SIZE":
      return make("E_BAD_REQUEST", "invalid chunked body");
    case "HPE_INVALID_METHOD":
      return make("E_BAD_REQUEST", "malformed HTTP request: unknown method");
    default:
      return make("E_BAD_REQUEST", "malformed HTTP request");
  }
}

export function clientErrorHandler(error: NodeJS.ErrnoException, socket: Socket): void {
  if (error.code === "ECONNRESET" || socket.destroyed) return;
  // Node's own rule: a raw answer only while no response has begun on this connection.
  const inFlight = (socket as Socket & { _httpMessage?: { headersSent?: boolean } })._httpMessage;
  if (socket.writable && !inFlight?.headersSent) {
    socket.end(rawResponse(clientErrorOf(error)));
    // A client that never reads must not keep the socket: it goes after a short grace.
    setTimeout(() => socket.destroy(), 1000).unref();
  } else {
    socket.destroy();
  }
}

/**
 * Fastify's routing errors (a percent-encoding that does not decode, a path
 * segment over the router's limit), which it hands to `frameworkErrors`
 * before any route or error handler is involved.
 */
export function frameworkErrorHandler(
  error: FastifyError,
  _request: FastifyRequest,
  reply: FastifyReply,
): void {
  sendError(reply, toHttpError(error));
}

export function installErrorHandlers(app: FastifyInstance, allowed: AllowedMethods): void {
  app.setErrorHandler((error: unknown, request: FastifyRequest, reply: FastifyReply) => {
    const mapped = toHttpError(error);
    if (mapped.internal) request.log.error({ err: error }, "request failed");
    // The rest of a body that did not arrive in time is not waited for: the connection goes.
    if (mapped.body.error.code === "E_REQUEST_TIMEOUT") reply.header("connection", "close");
    return sendError(reply, mapped);
  });
  app.setNotFoundHandler((request, reply) => {
    const path = request.url.split("?")[0]!;
    const methods = allowed.at(path);
    if (methods.length > 0) {
      const refusal = make(
        "E_METHOD_NOT_ALLOWED",
        `${request.method} is not served at ${path}: use ${methods.join(", ")}`,
        { allowed: methods },
      );
      return sendError(reply.header("allow", methods.join(", ")), refusal);
    }
    return sendError(reply, make("E_NOT_FOUND", `no route ${request.method} ${path}`));
  });
  // Fastify's own "shutting down" answer is not ours: this one is, and says so.
  let closing = false;
  app.addHook("preClose", async () => {
    closing = true;
  });
  app.addHook("onRequest", async (_request, reply) => {
    if (!closing) return;
    reply.header("connection", "close");
    throw new TurnoutError("E_UNAVAILABLE", "the server is shutting down: try again in a moment");
  });
}
