/**
 * When a failed delivery is tried again, and when it is given up: exponential
 * backoff from `baseMs`, doubled per attempt up to `maxMs`, with jitter (so a
 * receiver coming back is not hit by every server at the same instant); after
 * `maxAttempts` attempts, or once the delivery is older than `maxAgeMs`, it is
 * marked failed and the subject's later deliveries go on.
 */
export interface RetryPolicy {
  baseMs: number;
  maxMs: number;
  maxAttempts: number;
  maxAgeMs: number;
}

export const DEFAULT_RETRY_POLICY: RetryPolicy = {
  baseMs: 1_000,
  maxMs: 5 * 60_000,
  maxAttempts: 25,
  maxAgeMs: 24 * 60 * 60_000,
};

export type RetryDecision = { retryAt: number } | { giveUp: string };

/**
 * `attempts`: tries made so far (1 after the first); `random` in [0, 1) picks
 * the jitter (the upper half of the backoff interval); `retryAfterMs` is the
 * receiver's own wish (Slack's Retry-After), honoured but capped at `maxMs`.
 */
export function nextAttempt(
  policy: RetryPolicy,
  attempts: number,
  createdAtMs: number,
  nowMs: number,
  random: number,
  retryAfterMs?: number,
): RetryDecision {
  if (attempts >= policy.maxAttempts) return { giveUp: `gave up after ${attempts} attempts` };
  const backoff = Math.min(policy.maxMs, policy.baseMs * 2 ** Math.max(0, attempts - 1));
  const wait =
    retryAfterMs !== undefined
      ? Math.min(policy.maxMs, Math.max(0, retryAfterMs))
      : backoff * (0.5 + random / 2);
  const retryAt = nowMs + Math.round(wait);
  if (retryAt - createdAtMs > policy.maxAgeMs) {
    return {
      giveUp: `gave up after ${attempts} attempts: older than ${Math.round(policy.maxAgeMs / 60_000)} min`,
    };
  }
  return { retryAt };
}
