import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { type ErrorCode, isTurnoutError } from "../domain/errors.js";

/**
 * The one place where error codes become HTTP statuses. Domain and engine code
 * throw TurnoutErrors with stable codes; Fastify throws its own errors for
 * transport problems (bad JSON, schema mismatch, oversized bodies). Both end
 * up here as `{"error": {code, message, details?}}`, so clients parse a single
 * shape whatever went wrong.
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
  E_NOT_FOUND: 404,
  E_LOCKED: 409,
  E_CONFLICT: 409,
  E_NOT_CANCELLABLE: 409,
  E_NO_RELEASE: 409,
  E_INVALID_MANIFEST: 409,
  E_PAYLOAD_TOO_LARGE: 413,
  E_RATE_LIMITED: 429,
  E_GIT: 502,
  E_UNAVAILABLE: 503,
  E_CONFIG: 500,
  E_INTERNAL: 500,
};

export const GENERIC_MESSAGE = "internal error";

export function statusOf(code: ErrorCode): number {
  return STATUS[code];
}

function make(
  code: ErrorCode,
  message: string,
  details?: Record<string, unknown>,
  status?: number,
): HttpError {
  const headers: Record<string, string> = {};
  if (code === "E_UNAUTHORIZED") headers["www-authenticate"] = 'Bearer realm="turnout"';
  const body: ErrorBody =
    details === undefined ? { error: { code, message } } : { error: { code, message, details } };
  return { status: status ?? STATUS[code], body, headers };
}

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
  switch (fastifyError.code) {
    case "FST_ERR_CTP_BODY_TOO_LARGE":
      return { ...make("E_PAYLOAD_TOO_LARGE", "request body is too large"), internal: false };
    case "FST_ERR_CTP_INVALID_MEDIA_TYPE":
      return {
        ...make("E_BAD_REQUEST", "unsupported content type: send application/json", undefined, 415),
        internal: false,
      };
  }
  const status = fastifyError.statusCode;
  if (typeof status === "number" && status >= 400 && status < 500) {
    // Fastify's own client errors (bad URL, bad content length, …): their messages are safe to show.
    return {
      ...make("E_BAD_REQUEST", fastifyError.message ?? "bad request", undefined, status),
      internal: false,
    };
  }
  return { ...make("E_INTERNAL", GENERIC_MESSAGE), internal: true };
}

export function sendError(reply: FastifyReply, error: HttpError): FastifyReply {
  return reply.code(error.status).headers(error.headers).send(error.body);
}

export function installErrorHandlers(app: FastifyInstance): void {
  app.setErrorHandler((error: unknown, request: FastifyRequest, reply: FastifyReply) => {
    const mapped = toHttpError(error);
    if (mapped.internal) request.log.error({ err: error }, "request failed");
    return sendError(reply, mapped);
  });
  app.setNotFoundHandler((request, reply) =>
    sendError(reply, make("E_NOT_FOUND", `no route ${request.method} ${request.url.split("?")[0]}`)),
  );
}
