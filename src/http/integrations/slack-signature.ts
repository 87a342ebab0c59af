import { createHmac, timingSafeEqual } from "node:crypto";

/**
 * Slack's request signing (api.slack.com/authentication/verifying-requests-from-slack):
 * `X-Slack-Signature: v0=<hex HMAC-SHA256(signing secret, "v0:" + timestamp + ":" + raw body)>`,
 * with `X-Slack-Request-Timestamp` in Unix seconds. A timestamp more than five
 * minutes away from now is refused, so a captured request cannot be replayed
 * later (an exact replay within the window is caught by the caller).
 */
export const SLACK_MAX_SKEW_S = 5 * 60;

const TIMESTAMP = /^[0-9]{1,12}$/;
const SIGNATURE = /^v0=([0-9a-f]{64})$/;

export type SlackVerdict = { ok: true; signature: string } | { ok: false; reason: string };

export function verifySlackSignature(
  secret: string,
  raw: Buffer,
  timestamp: string | undefined,
  signature: string | undefined,
  nowMs: number,
): SlackVerdict {
  if (timestamp === undefined || !TIMESTAMP.test(timestamp)) {
    return { ok: false, reason: "missing or malformed X-Slack-Request-Timestamp" };
  }
  if (Math.abs(nowMs / 1000 - Number(timestamp)) > SLACK_MAX_SKEW_S) {
    return { ok: false, reason: "X-Slack-Request-Timestamp is more than 5 minutes away" };
  }
  // The format is public and may be checked early; only the digest is compared in constant time.
  const match = signature === undefined ? null : SIGNATURE.exec(signature);
  if (!match) return { ok: false, reason: "missing or malformed X-Slack-Signature" };
  const expected = slackDigest(secret, timestamp, raw);
  if (!timingSafeEqual(Buffer.from(match[1]!, "hex"), expected)) {
    return { ok: false, reason: "X-Slack-Signature does not match" };
  }
  return { ok: true, signature: match[1]! };
}

/** What Slack sends in X-Slack-Signature (also what tests sign with). */
export function slackSignature(secret: string, timestamp: string, raw: Buffer | string): string {
  return `v0=${slackDigest(secret, timestamp, raw).toString("hex")}`;
}

function slackDigest(secret: string, timestamp: string, raw: Buffer | string): Buffer {
  return createHmac("sha256", secret).update(`v0:${timestamp}:`).update(raw).digest();
}
