/**
 * The one error family of Turnout. Every failure that reaches a user carries a
 * stable `code`; http/ maps codes to statuses in one place (http/error-mapping.ts)
 * and the CLI prints the code and message. Domain code throws these and never
 * anything transport-specific.
 */
export const ERROR_CODES = [
  "E_BAD_REQUEST",
  "E_VALIDATION",
  "E_INVALID_NAME",
  "E_INVALID_REF",
  "E_INVALID_PARAM",
  "E_UNAUTHORIZED",
  "E_FORBIDDEN",
  "E_NOT_FOUND",
  "E_LOCKED",
  "E_OUTSIDE_WINDOW",
  "E_COMMIT_LOCKED",
  "E_CONFLICT",
  "E_NOT_CANCELLABLE",
  "E_NO_RELEASE",
  "E_PROMOTION_REQUIRED",
  "E_PROMOTION_TOO_EARLY",
  "E_GIT",
  "E_REF_NOT_FOUND",
  "E_CONFIG",
  "E_INVALID_MANIFEST",
  "E_PAYLOAD_TOO_LARGE",
  // Emergency deploys (domain/emergency.ts): the environment or the role does not permit one.
  "E_EMERGENCY_NOT_ALLOWED",
  // The environment's provider cannot do what was asked (e.g. install an uploaded artifact).
  "E_PROVIDER_UNSUPPORTED",
  // The shared artifact store outside the database (an S3-compatible bucket) refused or failed.
  "E_ARTIFACT_STORE",
  // Transport problems the HTTP server itself answers (see http/error-mapping.ts).
  "E_METHOD_NOT_ALLOWED",
  "E_REQUEST_TIMEOUT",
  "E_URI_TOO_LONG",
  "E_UNSUPPORTED_MEDIA_TYPE",
  "E_HEADERS_TOO_LARGE",
  "E_RATE_LIMITED",
  "E_UNAVAILABLE",
  "E_INTERNAL",
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

export class TurnoutError extends Error {
  readonly code: ErrorCode;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, details?: Record<string, unknown>) {
    super(message);
    this.name = "TurnoutError";
    this.code = code;
    this.details = details;
  }

  toJSON(): { code: ErrorCode; message: string; details?: Record<string, unknown> } {
    return this.details === undefined
      ? { code: this.code, message: this.message }
      : { code: this.code, message: this.message, details: this.details };
  }
}

export function isTurnoutError(value: unknown): value is TurnoutError {
  return value instanceof TurnoutError;
}

export function notFound(what: string, details?: Record<string, unknown>): TurnoutError {
  return new TurnoutError("E_NOT_FOUND", `${what} not found`, details);
}

/** The answer for an app that does not exist, or that the caller may not see (the two must not differ). */
export function appNotFound(app: string): TurnoutError {
  return notFound(`app '${app}'`, { app });
}
