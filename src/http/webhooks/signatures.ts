import { createHash, createHmac, timingSafeEqual } from "node:crypto";

/**
 * Webhook authentication. Every comparison goes through timingSafeEqual on
 * buffers of equal length, so a caller cannot learn a secret (or a correct
 * signature) byte by byte from response times.
 */
const SIGNATURE = /^sha256=([0-9a-f]{64})$/i;

/**
 * True when `header` is `sha256=<hex>` of HMAC-SHA256(secret, body): GitHub's
 * X-Hub-Signature-256 and Turnout's own X-Turnout-Signature. The format check
 * may exit early: the format is public, only the digest is secret.
 */
export function hmacSha256Matches(secret: string, body: Buffer, header: string): boolean {
  const match = SIGNATURE.exec(header.trim());
  if (!match) return false;
  const expected = createHmac("sha256", secret).update(body).digest();
  return timingSafeEqual(Buffer.from(match[1]!, "hex"), expected);
}

/** `sha256=<hex>` of a body: what a sender puts in X-Turnout-Signature. */
export function hmacSha256Header(secret: string, body: Buffer | string): string {
  return `sha256=${createHmac("sha256", secret).update(body).digest("hex")}`;
}

/**
 * GitLab sends the secret itself (X-Gitlab-Token). Hashing both sides first
 * gives equal-length buffers, so not even the secret's length leaks.
 */
export function tokenMatches(secret: string, token: string): boolean {
  return timingSafeEqual(sha256(secret), sha256(token));
}

export function sha256(data: Buffer | string): Buffer {
  return createHash("sha256").update(data).digest();
}
