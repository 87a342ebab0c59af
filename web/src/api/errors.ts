/**
 * API errors in words a person can act on: what happened (the server's own
 * message, which names the app, the lock holder, the ref…) and what to do
 * about it. Never the raw JSON.
 */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details: Record<string, unknown> | undefined,
  ) {
    super(message);
    this.name = "ApiError";
  }
}

/** The request never got an answer: the server is down or the network is. */
export class ConnectionError extends Error {
  constructor() {
    super("The server could not be reached.");
    this.name = "ConnectionError";
  }
}

export interface Explained {
  title: string;
  message: string;
  hint: string | null;
  code: string | null;
}

const HINTS: Record<string, (error: ApiError) => { title: string; hint: string | null }> = {
  E_LOCKED: (e) => ({
    title: "The environment is locked",
    hint: `Ask ${String(e.details?.["lockedBy"] ?? "whoever locked it")} to unlock it, or wait; an admin can deploy past a lock with “Deploy anyway”.`,
  }),
  E_FORBIDDEN: () => ({
    title: "Not allowed with this token",
    hint: "Your token's role or apps do not cover this. Ask an admin for a token with the deployer role for this app.",
  }),
  E_UNAUTHORIZED: () => ({
    title: "Signed out",
    hint: "Your token is missing, revoked or expired. Sign in again.",
  }),
  E_NOT_FOUND: () => ({
    title: "Not found",
    hint: "It may have been removed from the configuration, or your token may not see it.",
  }),
  E_NO_RELEASE: () => ({
    title: "No release to go back to",
    hint: "Only deploys that succeeded left a release.",
  }),
  E_NOT_CANCELLABLE: () => ({ title: "Nothing to cancel", hint: "The deploy has already finished." }),
  E_CONFLICT: () => ({
    title: "That changed in the meantime",
    hint: "Reload the page to see the current state.",
  }),
  E_INVALID_REF: () => ({ title: "Not a valid ref", hint: "Use a branch, a tag or a commit SHA." }),
  E_REF_NOT_FOUND: () => ({
    title: "Ref not found",
    hint: "Check the branch, tag or SHA; new commits appear after the next fetch (within a minute).",
  }),
  E_INVALID_NAME: () => ({ title: "Not a valid name", hint: null }),
  E_INVALID_PARAM: () => ({ title: "Invalid parameter", hint: null }),
  E_VALIDATION: () => ({ title: "The request was refused", hint: null }),
  E_BAD_REQUEST: () => ({ title: "The request was refused", hint: null }),
  E_PAYLOAD_TOO_LARGE: () => ({ title: "Too large", hint: null }),
  E_RATE_LIMITED: () => ({ title: "Too many requests", hint: "Wait a moment, then try again." }),
  E_GIT: () => ({
    title: "Git failed",
    hint: "The repository could not be read: check its URL and credentials in the app's manifest.",
  }),
  E_UNAVAILABLE: () => ({ title: "The server is busy or stopping", hint: "Try again in a moment." }),
  E_CONFIG: () => ({
    title: "Configuration problem",
    hint: "Fix the app's manifest; the server reloads it by itself.",
  }),
  E_INTERNAL: () => ({
    title: "Something went wrong on the server",
    hint: "The server's log has the details. Try again; if it keeps failing, tell whoever runs Turnout.",
  }),
};

export function explain(error: unknown): Explained {
  if (error instanceof ApiError) {
    const known = HINTS[error.code]?.(error) ?? { title: "The request failed", hint: null };
    const message = error.message.endsWith(".") ? error.message : `${error.message}.`;
    return { ...known, message: capitalize(message), code: error.code };
  }
  if (error instanceof ConnectionError) {
    return {
      title: "No connection",
      message: "The server could not be reached.",
      hint: "It may be restarting; this page reconnects by itself.",
      code: null,
    };
  }
  return {
    title: "Something went wrong",
    message: error instanceof Error ? error.message : String(error),
    hint: null,
    code: null,
  };
}

function capitalize(text: string): string {
  return text.length > 0 ? text[0]!.toUpperCase() + text.slice(1) : text;
}
