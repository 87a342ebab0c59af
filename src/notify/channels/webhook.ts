import { z } from "zod";
import type { Channel, ChannelContext, ChannelDelivery, ChannelFactory, ChannelResult } from "../channel.js";
import { signPayload } from "../signature.js";
import { HttpPoster } from "./http-post.js";
import { channelOptions, httpOutcome } from "./options.js";

/**
 * Generic outgoing webhook: one signed JSON POST per event. The body is the
 * event (domain/notification-event.ts) with the delivery's id and links; the
 * schema and the signature are documented in docs/integrations.md.
 */
const schema = z
  .object({
    url: z
      .string()
      .url()
      .refine((u) => /^https?:\/\//.test(u), { message: "must be an http(s) URL" }),
    secret: z.string().min(16, "use a secret of at least 16 characters"),
  })
  .strict();

export interface WebhookBody {
  /** Version of this schema. */
  schema: 1;
  delivery: number;
  event: ChannelDelivery["event"];
  links: ChannelDelivery["links"];
}

class WebhookChannel implements Channel {
  readonly type = "webhook";
  private readonly poster: HttpPoster;

  constructor(
    readonly name: string,
    private readonly options: z.infer<typeof schema>,
  ) {
    this.poster = new HttpPoster(new URL(options.url));
  }

  async close(): Promise<void> {
    this.poster.close();
  }

  async send(delivery: ChannelDelivery, signal: AbortSignal): Promise<ChannelResult> {
    const payload: WebhookBody = {
      schema: 1,
      delivery: delivery.id,
      event: delivery.event,
      links: delivery.links,
    };
    const body = JSON.stringify(payload);
    const timestamp = Math.floor(Date.now() / 1000);
    let response: { status: number; header(name: string): string | null };
    try {
      response = await this.poster.post(
        body,
        {
          "content-type": "application/json",
          "user-agent": "turnout-webhook/1",
          "x-turnout-event": delivery.event.kind,
          "x-turnout-delivery": String(delivery.id),
          "x-turnout-timestamp": String(timestamp),
          "x-turnout-signature": signPayload(this.options.secret, timestamp, body),
        },
        signal,
      );
    } catch (error) {
      // The URL may carry a token in its query: the reason names the failure, not the address.
      return { outcome: "retry", reason: `could not reach the receiver: ${causeOf(error)}` };
    }
    return httpOutcome(response.status, response.header("retry-after"));
  }
}

export function causeOf(error: unknown): string {
  // fetch (Slack's client) wraps the cause; Node's http client throws it directly.
  const cause = (error as { cause?: { code?: string; message?: string } }).cause;
  const code = (error as { code?: unknown }).code;
  return (
    cause?.code ??
    cause?.message ??
    (typeof code === "string" ? code : undefined) ??
    (error instanceof Error ? error.name : "error")
  );
}

export const webhookChannels: ChannelFactory = {
  type: "webhook",
  create(name: string, options: Record<string, unknown>, _context: ChannelContext): Channel {
    return new WebhookChannel(name, channelOptions(schema, name, options));
  },
};
