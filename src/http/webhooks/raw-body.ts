import type { FastifyInstance } from "fastify";

/**
 * Webhook routes get their bodies as raw bytes: the signature is over exactly
 * the bytes sent, and re-serializing parsed JSON would not reproduce them.
 * Called inside the webhook routes' own plugin context, so the rest of the
 * API keeps its JSON parser. The server's bodyLimit still applies (→ 413).
 */
export function acceptRawBodies(scope: FastifyInstance): void {
  scope.removeAllContentTypeParsers();
  const keep = (_request: unknown, body: Buffer | string, done: (error: null, body: Buffer) => void) =>
    done(null, Buffer.isBuffer(body) ? body : Buffer.from(body));
  scope.addContentTypeParser("application/json", { parseAs: "buffer" }, keep);
  // GitHub's "Content type: application/x-www-form-urlencoded" option (and `curl -d`).
  scope.addContentTypeParser("application/x-www-form-urlencoded", { parseAs: "buffer" }, keep);
}
