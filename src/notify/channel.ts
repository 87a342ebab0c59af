/**
 * The channel interface: what every notifier (Slack, outgoing webhook, IRC,
 * GitHub Deployments, …) implements. A channel gets one delivery at a time
 * per subject (a deploy, an environment's locks, …) and says how it went; the
 * dispatcher owns retries, backoff, ordering and what is remembered between
 * deliveries. Stable: changes are additive only.
 */
import type { NotificationEvent } from "../domain/notification-event.js";

/**
 * What a channel remembers about one subject between deliveries, e.g. the
 * Slack message (channel id + ts) a deploy's later events update in place, or
 * the GitHub deployment id its statuses go to. JSON-serialisable; never
 * secrets (it is stored in the database and shown through the API).
 */
export type ChannelState = Record<string, unknown>;

export interface ChannelDelivery {
  /** The delivery's id (stable across retries: receivers may de-duplicate on it). */
  id: number;
  /** 1 on the first try, 2 on the first retry, … */
  attempt: number;
  event: NotificationEvent;
  /** What this channel remembered about the event's subject from its earlier deliveries (null: nothing yet). */
  state: ChannelState | null;
  /** Links for people: the deploy's page in Turnout when the event is about a deploy. */
  links: { deploy?: string; environment?: string };
}

export type ChannelResult =
  /** Done. `state` replaces what is remembered for the subject (omitted: kept as it was). */
  | { outcome: "delivered"; state?: ChannelState; detail?: string }
  /** Try again later (the receiver is down, rate-limited, …); `retryAfterMs` overrides the backoff. */
  | { outcome: "retry"; reason: string; retryAfterMs?: number }
  /** Will never work (bad credentials, unknown channel, payload refused): stop, mark it failed. */
  | { outcome: "give_up"; reason: string };

export interface Channel {
  /** The name it has in the server's settings (`notify_channels:`). */
  readonly name: string;
  /** Its type (`slack`, `webhook`, `irc`, …). */
  readonly type: string;
  /**
   * Delivers one event. Must not throw for transport trouble (return `retry`);
   * a throw is treated as `retry` with the error's message. `signal` aborts a
   * delivery that takes too long. Reasons must not contain secrets.
   */
  send(delivery: ChannelDelivery, signal: AbortSignal): Promise<ChannelResult>;
  /** Releases connections (IRC) when the server stops. */
  close?(): Promise<void>;
}

/** What a channel's factory gets besides its own options. */
export interface ChannelContext {
  /** Reports trouble that is not a delivery's (a dropped IRC connection, …); never with secrets. */
  report(message: string): void;
}

/**
 * Makes channels of one type from their settings. `options` are the channel's
 * entry in `notify_channels:` less `type`, with every `*_env` already
 * resolved by the settings loader into the named variable's value under the
 * key without `_env` (e.g. `token_env: SLACK_TOKEN` → `token: "xoxb-…"`).
 * `create` throws a TurnoutError (E_CONFIG) for bad options: the server
 * refuses to start rather than drop notifications later.
 */
export interface ChannelFactory {
  readonly type: string;
  create(name: string, options: Record<string, unknown>, context: ChannelContext): Channel;
}
