import { connection } from "./connection.js";
import { ApiError, ConnectionError } from "./errors.js";
import { storedToken } from "./session.js";

/**
 * The one way the UI talks to the server: JSON over `/api/v1` with the
 * stored bearer token. Failures become ApiError (the server answered with
 * its error format) or ConnectionError (no answer); a 401 tells the app to
 * ask for a sign-in again.
 */
let onUnauthorized: (() => void) | undefined;

export function whenUnauthorized(handler: () => void): void {
  onUnauthorized = handler;
}

export function authHeaders(token = storedToken()): Record<string, string> {
  return token ? { authorization: `Bearer ${token}` } : {};
}

export async function api<T>(method: string, path: string, body?: unknown, token?: string): Promise<T> {
  let response: Response;
  try {
    response = await fetch(path.startsWith("/") ? path : `/api/v1/${path}`, {
      method,
      headers: {
        accept: "application/json",
        ...authHeaders(token ?? storedToken()),
        ...(body !== undefined ? { "content-type": "application/json" } : {}),
      },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
  } catch {
    connection.lost();
    throw new ConnectionError();
  }
  connection.reached();
  const text = await response.text().catch(() => "");
  let parsed: unknown;
  try {
    parsed = text ? JSON.parse(text) : undefined;
  } catch {
    parsed = undefined;
  }
  if (!response.ok) {
    const error = (
      parsed as { error?: { code?: string; message?: string; details?: Record<string, unknown> } }
    )?.error;
    const failure = new ApiError(
      response.status,
      error?.code ?? `HTTP_${response.status}`,
      error?.message ?? `the server answered ${response.status} ${response.statusText}`,
      error?.details,
    );
    if (response.status === 401 && token === undefined) onUnauthorized?.();
    throw failure;
  }
  return parsed as T;
}

/**
 * A read started before the page that needs it exists: at start-up the
 * overview's data is asked for at the same time as who is signed in, instead
 * of after. The first `get` of that path within a few seconds takes it.
 */
const prefetched = new Map<string, { at: number; answer: Promise<unknown> }>();

export function prefetch(path: string): void {
  const answer = api("GET", path);
  answer.catch(() => undefined);
  prefetched.set(path, { at: Date.now(), answer });
}

export function get<T>(path: string): Promise<T> {
  const early = prefetched.get(path);
  if (early) {
    prefetched.delete(path);
    if (Date.now() - early.at < 5000) return early.answer as Promise<T>;
  }
  return api<T>("GET", path);
}
export const post = <T>(path: string, body?: unknown) => api<T>("POST", path, body);
export const put = <T>(path: string, body?: unknown) => api<T>("PUT", path, body);
export const del = <T>(path: string) => api<T>("DELETE", path);

export function enc(value: string): string {
  return encodeURIComponent(value);
}
