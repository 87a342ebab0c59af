import { TurnoutError } from "../domain/errors.js";
import type { Channel, ChannelContext, ChannelFactory } from "./channel.js";
import { ircChannels } from "./channels/irc.js";
import { slackChannels } from "./channels/slack.js";
import { webhookChannels } from "./channels/webhook.js";

/**
 * Every channel type a server's settings may name (`type:`), besides GitHub
 * Deployments (made by the server, as it reads the store and the
 * configuration). Another type is one more entry here. Each needs nothing
 * but its own settings, so they all run in the notification thread
 * (channel-thread.ts); a type that needs the server's state does not belong
 * in this list.
 */
export const CHANNEL_TYPES: readonly ChannelFactory[] = [slackChannels, webhookChannels, ircChannels];

/** The configured channels, made from the settings; an unknown type or bad options stop the start (E_CONFIG). */
export function createChannels(
  settings: readonly { name: string; type: string; options: Record<string, unknown> }[],
  context: ChannelContext,
  types: readonly ChannelFactory[] = CHANNEL_TYPES,
): Map<string, Channel> {
  const channels = new Map<string, Channel>();
  for (const entry of settings) {
    const factory = types.find((t) => t.type === entry.type);
    if (!factory) {
      throw new TurnoutError(
        "E_CONFIG",
        `notify channel ${entry.name}: unknown type '${entry.type}' (known: ${types.map((t) => t.type).join(", ")})`,
      );
    }
    channels.set(entry.name, factory.create(entry.name, entry.options, context));
  }
  return channels;
}
