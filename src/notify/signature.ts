import { createHmac, timingSafeEqual } from "node:crypto";

/**
 * Outgoing webhook signatures: HMAC-SHA256 with the channel's secret over
 * `<timestamp>.<body>`, sent as `X-Turnout-Signature: v1=<hex>` beside
 * `X-Turnout-Timestamp: <unix seconds>`. Signing the timestamp with the body
 * lets a receiver refuse replays of an old, validly signed request.
 */
export const SIGNATURE_HEADER = "x-turnout-signature";
export const TIMESTAMP_HEADER = "x-turnout-timestamp";

export function signPayload(secret: string, timestamp: number, body: string): string {
  return `v1=${createHmac("sha256", secret).update(`${timestamp}.${body}`).digest("hex")}`;
}

/** The receiver's side (also the documented example): signature right and timestamp within `toleranceS`. */
export function verifySignature(
  secret: string,
  header: { signature: string | undefined; timestamp: string | undefined },
  body: string,
  nowS: number = Math.floor(Date.now() / 1000),
  toleranceS = 300,
): boolean {
  const timestamp = Number(header.timestamp);
  if (!header.signature || !Number.isInteger(timestamp) || Math.abs(nowS - timestamp) > toleranceS)
    return false;
  const expected = Buffer.from(signPayload(secret, timestamp, body));
  const given = Buffer.from(header.signature);
  return expected.length === given.length && timingSafeEqual(expected, given);
}
