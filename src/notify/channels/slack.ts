import { ErrorCode, LogLevel, WebClient } from "@slack/web-api";
import { z } from "zod";
import type { Channel, ChannelContext, ChannelDelivery, ChannelFactory, ChannelResult } from "../channel.js";
import { slackMessage } from "../slack-message.js";
import { channelOptions, httpOutcome } from "./options.js";
import { causeOf } from "./webhook.js";

/**
 * Slack, two ways:
 * - a bot token (`token_env`) and a `channel`: chat.postMessage through the
 *   official @slack/web-api, then chat.update of that same message for the
 *   deploy's later events (its channel id and ts are remembered per deploy);
 * - an incoming webhook (`webhook_url_env`): one message per event, since an
 *   incoming webhook cannot edit what it posted.
 * Retries are the outbox's: the client's own retries are off.
 */
const schema = z.union([
  z
    .object({
      token: z.string().min(1),
      channel: z.string().min(1),
      /** Slack's API base (tests, Enterprise Grid proxies); default https://slack.com/api/. */
      api_url: z.string().url().optional(),
    })
    .strict(),
  z.object({ webhook_url: z.string().url() }).strict(),
]);

/** Platform errors worth another try; every other one (invalid_auth, channel_not_found, …) will not heal by itself. */
const TRANSIENT = new Set([
  "ratelimited",
  "internal_error",
  "fatal_error",
  "service_unavailable",
  "request_timeout",
]);

class SlackBotChannel implements Channel {
  readonly type = "slack";
  private readonly client: WebClient;

  constructor(
    readonly name: string,
    private readonly channel: string,
    token: string,
    apiUrl: string | undefined,
    context: ChannelContext,
  ) {
    const quiet = () => undefined;
    this.client = new WebClient(token, {
      ...(apiUrl ? { slackApiUrl: apiUrl.endsWith("/") ? apiUrl : `${apiUrl}/` } : {}),
      retryConfig: { retries: 0 },
      rejectRateLimitedCalls: true,
      timeout: 10_000,
      logLevel: LogLevel.ERROR,
      logger: {
        debug: quiet,
        info: quiet,
        warn: quiet,
        error: (...msg: unknown[]) => context.report(`slack ${name}: ${msg.map(String).join(" ")}`),
        setLevel: quiet,
        getLevel: () => LogLevel.ERROR,
        setName: quiet,
      },
    });
  }

  async send(delivery: ChannelDelivery): Promise<ChannelResult> {
    const message = slackMessage(delivery.event, delivery.links);
    const previous = readState(delivery.state);
    const deployEvent = delivery.event.deploy !== undefined;
    try {
      if (deployEvent && previous) {
        try {
          await this.client.chat.update({ channel: previous.channel, ts: previous.ts, ...message });
          return { outcome: "delivered", detail: `updated ${previous.ts}` };
        } catch (error) {
          // The message was deleted meanwhile: post a new one and follow that.
          if (platformError(error) !== "message_not_found") throw error;
        }
      }
      const posted = await this.client.chat.postMessage({ channel: this.channel, ...message });
      const state = posted.ts && posted.channel ? { channel: posted.channel, ts: posted.ts } : undefined;
      return {
        outcome: "delivered",
        ...(deployEvent && state ? { state } : {}),
        detail: `posted ${posted.ts ?? ""}`.trim(),
      };
    } catch (error) {
      return slackFailure(error);
    }
  }
}

function readState(state: ChannelDelivery["state"]): { channel: string; ts: string } | undefined {
  const channel = state?.["channel"];
  const ts = state?.["ts"];
  return typeof channel === "string" && typeof ts === "string" ? { channel, ts } : undefined;
}

function platformError(error: unknown): string | undefined {
  const e = error as { code?: string; data?: { error?: string } };
  return e.code === ErrorCode.PlatformError ? e.data?.error : undefined;
}

function slackFailure(error: unknown): ChannelResult {
  const e = error as { code?: string; retryAfter?: number; statusCode?: number; data?: { error?: string } };
  switch (e.code) {
    case ErrorCode.RateLimitedError:
      return { outcome: "retry", reason: "rate limited by Slack", retryAfterMs: (e.retryAfter ?? 1) * 1000 };
    case ErrorCode.PlatformError: {
      const code = e.data?.error ?? "unknown_error";
      return TRANSIENT.has(code)
        ? { outcome: "retry", reason: `Slack: ${code}` }
        : { outcome: "give_up", reason: `Slack refused it: ${code}` };
    }
    case ErrorCode.HTTPError:
      return httpOutcome(e.statusCode ?? 500, null);
    default:
      return { outcome: "retry", reason: `could not reach Slack: ${causeOf(error)}` };
  }
}

class SlackWebhookChannel implements Channel {
  readonly type = "slack";
  constructor(
    readonly name: string,
    private readonly url: string,
  ) {}

  async send(delivery: ChannelDelivery, signal: AbortSignal): Promise<ChannelResult> {
    let response: Response;
    try {
      response = await fetch(this.url, {
        method: "POST",
        body: JSON.stringify(slackMessage(delivery.event, delivery.links)),
        headers: { "content-type": "application/json" },
        redirect: "manual",
        signal,
      });
      await response.body?.cancel().catch(() => undefined);
    } catch (error) {
      // The URL is the secret: never in a reason.
      return { outcome: "retry", reason: `could not reach Slack: ${causeOf(error)}` };
    }
    return httpOutcome(response.status, response.headers.get("retry-after"));
  }
}

export const slackChannels: ChannelFactory = {
  type: "slack",
  create(name: string, options: Record<string, unknown>, context: ChannelContext): Channel {
    const o = channelOptions(schema, name, options);
    return "webhook_url" in o
      ? new SlackWebhookChannel(name, o.webhook_url)
      : new SlackBotChannel(name, o.channel, o.token, o.api_url, context);
  },
};
