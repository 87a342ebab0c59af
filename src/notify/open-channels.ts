import type { RetryPolicy } from "../domain/notify-retry.js";
import type { Channel, ChannelContext, ChannelFactory } from "./channel.js";
import { type ChannelEntry, ChannelThread } from "./channel-thread.js";
import type { ChainTransport } from "./dispatcher.js";
import { CHANNEL_TYPES, createChannels, loaded } from "./registry.js";

export interface OpenChannelsOptions {
  /** The channels of the server's settings, in their order. */
  entries: readonly ChannelEntry[];
  /** Types the server makes itself because they read its state (GitHub Deployments): main thread. */
  serverTypes: readonly ChannelFactory[];
  report: ChannelContext["report"];
  /** Send the portable types from the notification thread (default true; false keeps all on the main thread). */
  thread?: boolean;
  /** The dispatcher's retry policy and send timeout, which the thread applies to the chains it sends. */
  retry?: RetryPolicy;
  sendTimeoutMs?: number;
}

export interface OpenChannels {
  channels: Map<string, Channel>;
  /** Where the dispatcher sends the thread's channels' chains (undefined: no thread). */
  transport: ChainTransport | undefined;
  /** Ends the notification thread, if one was started (idempotent; the dispatcher closes channels too). */
  close(): Promise<void>;
}

/**
 * Makes the configured channels: the portable types (CHANNEL_TYPES) in the
 * notification thread, the server's own types on the main thread. Bad
 * settings of either kind refuse the start (E_CONFIG) before anything runs.
 */
export async function openChannels(options: OpenChannelsOptions): Promise<OpenChannels> {
  const portable = new Set(CHANNEL_TYPES.map((t) => t.type));
  const inThread = options.entries.filter((e) => portable.has(e.type));
  // The rest are the server's types or unknown ones, which createChannels refuses with the full list.
  const onMain = await createChannels(
    options.entries.filter((e) => !portable.has(e.type)),
    { report: options.report },
    [...CHANNEL_TYPES, ...options.serverTypes.map(loaded)],
  );
  let thread: ChannelThread | undefined;
  let threaded: Map<string, Channel>;
  if (inThread.length > 0 && options.thread !== false) {
    thread = await ChannelThread.start(inThread, options.report, {
      ...(options.retry ? { retry: options.retry } : {}),
      ...(options.sendTimeoutMs ? { sendTimeoutMs: options.sendTimeoutMs } : {}),
    });
    threaded = thread.channels();
  } else {
    threaded = await createChannels(inThread, { report: options.report }, CHANNEL_TYPES);
  }
  const channels = new Map<string, Channel>();
  for (const entry of options.entries) {
    const channel = threaded.get(entry.name) ?? onMain.get(entry.name);
    if (channel) channels.set(entry.name, channel);
  }
  return { channels, transport: thread, close: async () => thread?.close() };
}
