import type { FastifyRequest } from "fastify";
import { TurnoutError } from "../../domain/errors.js";

/**
 * Header values that end up in the store, the audit log and responses:
 * bounded printable ASCII, so a sender cannot stuff anything else in.
 */
const TOKEN = /^[\x21-\x7e][\x20-\x7e]{0,199}$/;

export function headerOf(request: FastifyRequest, name: string): string | undefined {
  const value = request.headers[name.toLowerCase()];
  const text = Array.isArray(value) ? value.join(", ") : value;
  return text === undefined ? undefined : text.trim();
}

/** A header naming a delivery or an event: required, at most 200 printable characters. */
export function requiredToken(request: FastifyRequest, name: string): string {
  const value = optionalToken(request, name);
  if (value === undefined) throw new TurnoutError("E_BAD_REQUEST", `missing ${name} header`);
  return value;
}

export function optionalToken(request: FastifyRequest, name: string): string | undefined {
  const value = headerOf(request, name);
  if (value === undefined || value === "") return undefined;
  if (!TOKEN.test(value)) {
    throw new TurnoutError("E_BAD_REQUEST", `${name} must be at most 200 printable ASCII characters`);
  }
  return value;
}
