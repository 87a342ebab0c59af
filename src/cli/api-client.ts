/**
 * The HTTP client of the Turnout API. Every response keeps its raw text next
 * to the parsed value, because `--json` prints the server's body exactly.
 * The token goes into the Authorization header and nowhere else: no error
 * message built here ever contains it.
 */
export class ApiError extends Error {
  readonly code: string;
  readonly status: number;
  readonly details: Record<string, unknown> | undefined;

  constructor(status: number, code: string, message: string, details?: Record<string, unknown>) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

/** The server could not be reached at all (refused, unknown host, reset). */
export class ConnectionError extends Error {
  readonly server: string;

  constructor(server: string, cause: unknown) {
    const code = networkErrorCode(cause);
    super(
      code === "ECONNREFUSED" || code === undefined
        ? `cannot reach the Turnout server at ${server} (is it running? start it with: npm start)`
        : `cannot reach the Turnout server at ${server} (${code})`,
      { cause },
    );
    this.name = "ConnectionError";
    this.server = server;
  }
}

export interface ApiResponse<T> {
  status: number;
  body: T;
  /** The body as the server sent it; empty for 204. */
  text: string;
}

export interface ApiClientOptions {
  server: string;
  token: string;
  userAgent?: string;
}

type Query = Record<string, string | number | boolean | undefined>;

export class ApiClient {
  readonly server: string;
  readonly #token: string;
  readonly #userAgent: string;

  constructor(options: ApiClientOptions) {
    this.server = options.server.replace(/\/+$/, "");
    this.#token = options.token;
    this.#userAgent = options.userAgent ?? "turnout-cli";
  }

  get<T>(path: string, query?: Query): Promise<ApiResponse<T>> {
    return this.request<T>("GET", path, undefined, query);
  }

  post<T>(path: string, body?: unknown): Promise<ApiResponse<T>> {
    return this.request<T>("POST", path, body ?? {});
  }

  put<T>(path: string, body?: unknown): Promise<ApiResponse<T>> {
    return this.request<T>("PUT", path, body ?? {});
  }

  delete<T>(path: string): Promise<ApiResponse<T>> {
    return this.request<T>("DELETE", path);
  }

  url(path: string, query?: Query): string {
    const url = new URL(this.server + path);
    for (const [key, value] of Object.entries(query ?? {})) {
      if (value !== undefined) url.searchParams.set(key, String(value));
    }
    return url.toString();
  }

  headers(extra: Record<string, string> = {}): Record<string, string> {
    return {
      authorization: `Bearer ${this.#token}`,
      "user-agent": this.#userAgent,
      accept: "application/json",
      // Tells the server's audit trail this came from the CLI (source "cli").
      "x-turnout-client": "cli",
      ...extra,
    };
  }

  /** A raw fetch with auth, for streams; network failures become ConnectionError. */
  async fetch(path: string, init: RequestInit & { query?: Query; headers?: Record<string, string> }) {
    try {
      return await fetch(this.url(path, init.query), { ...init, headers: this.headers(init.headers) });
    } catch (error) {
      if ((error as Error).name === "AbortError") throw error;
      throw new ConnectionError(this.server, error);
    }
  }

  /** POSTs a stream (an artifact upload) as it is produced. */
  async upload<T>(
    path: string,
    body: ReadableStream<Uint8Array>,
    contentType: string,
  ): Promise<ApiResponse<T>> {
    const init: RequestInit & { duplex: "half" } = {
      method: "POST",
      headers: this.headers({ "content-type": contentType }),
      body,
      // Node's fetch sends a stream body only half-duplex.
      duplex: "half",
    };
    let response: Response;
    try {
      response = await fetch(this.url(path), init);
    } catch (error) {
      throw new ConnectionError(this.server, error);
    }
    let text: string;
    try {
      text = await response.text();
    } catch (error) {
      throw new ConnectionError(this.server, error);
    }
    return { status: response.status, body: parseBody<T>(response, text), text };
  }

  async request<T>(method: string, path: string, body?: unknown, query?: Query): Promise<ApiResponse<T>> {
    const response = await this.fetch(path, {
      method,
      query,
      headers: body === undefined ? {} : { "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    let text: string;
    try {
      text = await response.text();
    } catch (error) {
      throw new ConnectionError(this.server, error);
    }
    return { status: response.status, body: parseBody<T>(response, text), text };
  }
}

function parseBody<T>(response: Response, text: string): T {
  let parsed: unknown;
  if (text.trim() !== "") {
    try {
      parsed = JSON.parse(text);
    } catch {
      if (!response.ok) {
        throw new ApiError(
          response.status,
          `HTTP_${response.status}`,
          `HTTP ${response.status} ${response.statusText}`.trim(),
        );
      }
      throw new ApiError(response.status, "E_BAD_RESPONSE", "the server sent a response that is not JSON");
    }
  }
  if (!response.ok) throw toApiError(response, parsed);
  return (parsed ?? {}) as T;
}

function toApiError(response: Response, parsed: unknown): ApiError {
  const error = (parsed as { error?: { code?: unknown; message?: unknown; details?: unknown } } | undefined)
    ?.error;
  if (error && typeof error.code === "string") {
    return new ApiError(
      response.status,
      error.code,
      typeof error.message === "string" ? error.message : error.code,
      error.details && typeof error.details === "object"
        ? (error.details as Record<string, unknown>)
        : undefined,
    );
  }
  return new ApiError(
    response.status,
    `HTTP_${response.status}`,
    `HTTP ${response.status} ${response.statusText}`.trim(),
  );
}

/** undici wraps the socket error: `TypeError: fetch failed` with `cause.code`. */
function networkErrorCode(error: unknown): string | undefined {
  let current: unknown = error;
  for (let depth = 0; depth < 4 && current; depth++) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === "string" && code.startsWith("E")) return code;
    const errors = (current as { errors?: unknown[] }).errors;
    if (Array.isArray(errors) && errors.length > 0) current = errors[0];
    else current = (current as { cause?: unknown }).cause;
  }
  return undefined;
}
