import { TurnoutError } from "../domain/errors.js";
import type { Channel, ChannelContext, ChannelFactory } from "./channel.js";

/**
 * A channel type by name, and how to load its factory. Each type's module is
 * imported only when a channel of that type is configured: Slack's client,
 * irc-framework and undici together cost a server some 30 MB and 400 ms of
 * start-up, which a server without channels (the default) should not pay.
 */
export interface ChannelType {
  readonly type: string;
  load(): Promise<ChannelFactory>;
}

/** A factory already in memory, as a ChannelType (the server's own types). */
export function loaded(factory: ChannelFactory): ChannelType {
  return { type: factory.type, load: async () => factory };
}

/**
 * Every channel type a server's settings may name (`type:`), besides GitHub
 * Deployments (made by the server, as it reads the store and the
 * configuration). Another type is one more entry here. Each needs nothing
 * but its own settings, so they all run in the notification thread
 * (channel-thread.ts); a type that needs the server's state does not belong
 * in this list.
 */
export const CHANNEL_TYPES: readonly ChannelType[] = [
  { type: "slack", load: async () => (await import("./channels/slack.js")).slackChannels },
  { type: "webhook", load: async () => (await import("./channels/webhook.js")).webhookChannels },
  { type: "irc", load: async () => (await import("./channels/irc.js")).ircChannels },
];

/**
 * The configured channels, made from the settings in their order; an unknown
 * type or bad options stop the start (E_CONFIG). Only the types named are loaded.
 */
export async function createChannels(
  settings: readonly { name: string; type: string; options: Record<string, unknown> }[],
  context: ChannelContext,
  types: readonly ChannelType[] = CHANNEL_TYPES,
): Promise<Map<string, Channel>> {
  const channels = new Map<string, Channel>();
  const factories = new Map<string, Promise<ChannelFactory>>();
  for (const entry of settings) {
    const type = types.find((t) => t.type === entry.type);
    if (!type) {
      throw new TurnoutError(
        "E_CONFIG",
        `notify channel ${entry.name}: unknown type '${entry.type}' (known: ${types.map((t) => t.type).join(", ")})`,
      );
    }
    let factory = factories.get(type.type);
    if (!factory) {
      factory = type.load();
      factories.set(type.type, factory);
    }
    channels.set(entry.name, (await factory).create(entry.name, entry.options, context));
  }
  return channels;
}
