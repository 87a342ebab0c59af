import { z } from "zod";
import { parseDuration } from "../domain/duration.js";
import { TurnoutError } from "../domain/errors.js";
import { isValidName } from "../domain/names.js";
import { DEFAULT_RETRY_POLICY, type RetryPolicy } from "../domain/notify-retry.js";

/**
 * The server's notification channels (settings file `notify:`), with their
 * credentials. Manifests in git only name a channel and the events it takes;
 * tokens, webhook secrets and URLs live here, read from environment
 * variables (`*_env`) so the settings file itself need not hold them.
 */
export interface NotifyChannelSettings {
  name: string;
  type: string;
  /**
   * The channel's own options, `type` removed, every `<key>_env: VAR`
   * replaced by `<key>: <value of VAR>`. Holds secrets: never logged or shown.
   */
  options: Record<string, unknown>;
}

export interface NotifySettings {
  channels: NotifyChannelSettings[];
  retry: RetryPolicy;
  /** The server's address as people reach it, for links to deploys (default: http://host:port). */
  publicUrl?: string;
}

const durationValue = z.union([z.string(), z.number()]);

export const notifyFileSchema = z
  .object({
    retry: z
      .object({
        base: durationValue.optional(),
        max: durationValue.optional(),
        attempts: z.number().int().min(1).max(1000).optional(),
        max_age: durationValue.optional(),
      })
      .strict()
      .optional(),
    channels: z.record(z.string(), z.object({ type: z.string().min(1) }).catchall(z.unknown())).optional(),
  })
  .strict();

export function resolveNotifySettings(
  raw: unknown,
  publicUrl: string | undefined,
  env: Record<string, string | undefined>,
): NotifySettings {
  const parsed = notifyFileSchema.safeParse(raw ?? {});
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new TurnoutError("E_CONFIG", `notify.${issue.path.join(".")}: ${issue.message}`);
  }
  const file = parsed.data;
  const channels: NotifyChannelSettings[] = [];
  for (const [name, entry] of Object.entries(file.channels ?? {})) {
    if (!isValidName(name)) {
      throw new TurnoutError(
        "E_CONFIG",
        `notify channel name ${JSON.stringify(name)} must use lowercase letters, digits and '-'`,
      );
    }
    const { type, ...rest } = entry;
    const options: Record<string, unknown> = {};
    for (const [key, value] of Object.entries(rest)) {
      if (key.endsWith("_env")) {
        if (typeof value !== "string") {
          throw new TurnoutError(
            "E_CONFIG",
            `notify channel ${name}: ${key} must name an environment variable`,
          );
        }
        const secret = env[value];
        // Said without the value: the name of the variable is enough to fix it.
        if (secret === undefined || secret === "") {
          throw new TurnoutError(
            "E_CONFIG",
            `notify channel ${name}: environment variable ${value} (${key}) is not set`,
          );
        }
        options[key.slice(0, -"_env".length)] = secret;
      } else {
        options[key] = value;
      }
    }
    channels.push({ name, type, options });
  }
  const ms = (name: string, value: string | number | undefined, fallback: number) => {
    if (value === undefined) return fallback;
    try {
      return parseDuration(value);
    } catch (error) {
      throw new TurnoutError("E_CONFIG", `notify.retry.${name}: ${(error as Error).message}`);
    }
  };
  const retry: RetryPolicy = {
    baseMs: Math.max(1, ms("base", file.retry?.base, DEFAULT_RETRY_POLICY.baseMs)),
    maxMs: Math.max(1, ms("max", file.retry?.max, DEFAULT_RETRY_POLICY.maxMs)),
    maxAttempts: file.retry?.attempts ?? DEFAULT_RETRY_POLICY.maxAttempts,
    maxAgeMs: ms("max_age", file.retry?.max_age, DEFAULT_RETRY_POLICY.maxAgeMs),
  };
  return { channels, retry, ...(publicUrl ? { publicUrl: publicUrl.replace(/\/+$/, "") } : {}) };
}
