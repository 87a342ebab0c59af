import { parentPort, workerData } from "node:worker_threads";
import { TurnoutError } from "../domain/errors.js";
import { ChainSender } from "./chain-sender.js";
import type { Channel, ChannelResult } from "./channel.js";
import type { ChannelWorkerData, FromChannelWorker, ToChannelWorker } from "./channel-thread.js";
import { CHANNEL_TYPES, createChannels } from "./registry.js";

/**
 * The notification thread (started by channel-thread.ts): makes the portable
 * channels from their settings and sends what the main thread's dispatcher
 * hands it, one message per delivery and one per outcome. Retries, order and
 * state stay with the dispatcher; this only sends.
 */
const { entries, retry, sendTimeoutMs } = workerData as ChannelWorkerData;
const port = parentPort!;
const post = (message: FromChannelWorker) => port.postMessage(message);

let channels: Map<string, Channel>;
try {
  channels = await createChannels(
    entries,
    { report: (message) => post({ kind: "report", message }) },
    CHANNEL_TYPES,
  );
  post({ kind: "ready" });
} catch (error) {
  const refused =
    error instanceof TurnoutError
      ? { code: error.code, message: error.message }
      : { code: "E_INTERNAL" as const, message: error instanceof Error ? error.message : String(error) };
  post({ kind: "refused", ...refused });
  process.exit(1);
}

const inFlight = new Map<number, AbortController>();
// Aborted when the thread closes: chains in flight answer at once (retried later), never hang the close.
const closing = new AbortController();
const chains = new ChainSender({
  channels,
  signal: closing.signal,
  ...(retry ? { retry } : {}),
  ...(sendTimeoutMs ? { sendTimeoutMs } : {}),
});

port.on("message", (message: ToChannelWorker) => {
  if (message.kind === "chains") {
    void chains
      .sendChains(message.chains)
      .then((updates) => post({ kind: "updates", id: message.id, updates }));
  } else if (message.kind === "send") void send(message.id, message.channel, message.delivery);
  else if (message.kind === "abort") inFlight.get(message.id)?.abort();
  else if (message.kind === "close") void close();
});

async function send(id: number, name: string, delivery: Parameters<Channel["send"]>[0]): Promise<void> {
  const controller = new AbortController();
  inFlight.set(id, controller);
  let result: ChannelResult;
  try {
    const channel = channels.get(name);
    result = channel
      ? await channel.send(delivery, controller.signal)
      : { outcome: "give_up", reason: `channel ${name} is not configured` };
  } catch (error) {
    // The Channel contract: a throw is a retry with the error's message.
    result = { outcome: "retry", reason: error instanceof Error ? error.message : String(error) };
  } finally {
    inFlight.delete(id);
  }
  post({ kind: "result", id, result });
}

async function close(): Promise<void> {
  closing.abort();
  for (const controller of inFlight.values()) controller.abort();
  await Promise.allSettled([...channels.values()].map((channel) => channel.close?.()));
  post({ kind: "closed" });
}
