import type { z } from "zod";
import { TurnoutError } from "../../domain/errors.js";

/** A channel's options checked against its schema; problems name the channel and field, never a value. */
export function channelOptions<T extends z.ZodType>(
  schema: T,
  name: string,
  options: Record<string, unknown>,
): z.infer<T> {
  const parsed = schema.safeParse(options);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new TurnoutError(
      "E_CONFIG",
      `notify channel ${name}: ${issue.path.join(".") || "(options)"}: ${issue.message}`,
    );
  }
  return parsed.data;
}

/** A receiver's HTTP status → what the dispatcher does: 2xx done, 408/429/5xx later, other 4xx never. */
export function httpOutcome(
  status: number,
  retryAfter: string | null,
):
  | { outcome: "delivered" }
  | { outcome: "retry"; reason: string; retryAfterMs?: number }
  | { outcome: "give_up"; reason: string } {
  if (status >= 200 && status < 300) return { outcome: "delivered" };
  const seconds = retryAfter !== null ? Number(retryAfter) : Number.NaN;
  const after = Number.isFinite(seconds) && seconds >= 0 ? { retryAfterMs: seconds * 1000 } : {};
  if (status === 408 || status === 429 || status >= 500) {
    return { outcome: "retry", reason: `receiver answered HTTP ${status}`, ...after };
  }
  return { outcome: "give_up", reason: `receiver refused it: HTTP ${status}` };
}
