import { expect } from "vitest";
import { ERROR_CODES } from "../../src/domain/errors.js";
import { statusOf } from "../../src/http/error-mapping.js";

/**
 * What every answer of the server must be, whatever was sent: never a 5xx,
 * and every refusal in Turnout's error format (`{"error": {code, message}}`)
 * with a stable code whose status is the one the error mapping gives it, or
 * one of the exceptions docs/api.md names.
 */
const DOCUMENTED_EXCEPTIONS = new Set(["E_VALIDATION 422", "E_BAD_REQUEST 426"]);

export function expectNoServerError(status: number, body: unknown, what: string): void {
  expect(status, `${what}: ${JSON.stringify(body)}`).toBeLessThan(500);
  if (status < 400) return;
  expectErrorFormat(status, body, what);
}

export function expectErrorFormat(status: number, body: unknown, what: string): void {
  const error = (body as { error?: { code?: unknown; message?: unknown } } | undefined)?.error;
  expect(error, `${what}: ${JSON.stringify(body)}`).toBeDefined();
  expect(ERROR_CODES as readonly unknown[], what).toContain(error!.code);
  expect(typeof error!.message, what).toBe("string");
  const code = error!.code as (typeof ERROR_CODES)[number];
  if (!DOCUMENTED_EXCEPTIONS.has(`${code} ${status}`)) expect(statusOf(code), what).toBe(status);
}
