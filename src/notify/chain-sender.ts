import { DEFAULT_RETRY_POLICY, nextAttempt, type RetryPolicy } from "../domain/notify-retry.js";
import type { ClaimedDelivery, DeliveryUpdate } from "../store/notify-outbox.js";
import type { Channel, ChannelDelivery, ChannelResult } from "./channel.js";

/** A claimed delivery with the links it carries for people (made by the dispatcher, where the public URL is known). */
export type LinkedDelivery = ClaimedDelivery & { links: ChannelDelivery["links"] };

export interface ChainSenderOptions {
  channels: ReadonlyMap<string, Channel>;
  retry?: RetryPolicy;
  /** How long one send may take (default 10 s); past it, the delivery is retried. */
  sendTimeoutMs?: number;
  /** Aborts every send in flight (the server stopping); they are retried later. */
  signal: AbortSignal;
}

/**
 * Sends chains of deliveries and says how each went: the chains
 * concurrently, each in order, every delivery seeing what the one before it
 * left (a Slack message's ts); the first that does not go through holds the
 * rest back (`released`). Retry and give-up decisions are made here too, so
 * the whole of a round's sending can run in the notification thread and
 * answer in one message (channel-thread.ts), or on the main thread for the
 * channels that live there.
 */
export class ChainSender {
  private readonly retry: RetryPolicy;

  constructor(private readonly options: ChainSenderOptions) {
    this.retry = options.retry ?? DEFAULT_RETRY_POLICY;
  }

  async sendChains(chains: readonly LinkedDelivery[][]): Promise<DeliveryUpdate[]> {
    return (await Promise.all(chains.map((chain) => this.sendChain(chain)))).flat();
  }

  private async sendChain(chain: readonly LinkedDelivery[]): Promise<DeliveryUpdate[]> {
    const updates: DeliveryUpdate[] = [];
    let state = chain[0]!.state;
    for (const [index, delivery] of chain.entries()) {
      const update = await this.send(delivery, state);
      updates.push(update);
      if (update.outcome !== "delivered") {
        for (const rest of chain.slice(index + 1)) updates.push({ id: rest.id, outcome: "released" });
        break;
      }
      if (update.state !== undefined) state = update.state;
    }
    return updates;
  }

  private async send(delivery: LinkedDelivery, state: ClaimedDelivery["state"]): Promise<DeliveryUpdate> {
    const channel = this.options.channels.get(delivery.channel);
    if (!channel) {
      return { id: delivery.id, outcome: "failed", error: `channel ${delivery.channel} is not configured` };
    }
    // One controller and one timer per send (AbortSignal.any and .timeout cost several times more,
    // and a round sends hundreds).
    const controller = new AbortController();
    const signal = controller.signal;
    const abort = () => controller.abort();
    const timer = setTimeout(abort, this.options.sendTimeoutMs ?? 10_000);
    if (this.options.signal.aborted) abort();
    else this.options.signal.addEventListener("abort", abort, { once: true });
    let result: ChannelResult;
    try {
      // Raced against the signal too: a channel whose client cannot be aborted still yields its slot.
      result = await untilAborted(
        signal,
        channel.send(
          {
            id: delivery.id,
            attempt: delivery.attempts,
            event: delivery.event,
            state,
            links: delivery.links,
          },
          signal,
        ),
      );
    } catch (error) {
      result = {
        outcome: "retry",
        reason: this.options.signal.aborted ? "stopped" : signal.aborted ? "timed out" : errorText(error),
      };
    } finally {
      clearTimeout(timer);
      this.options.signal.removeEventListener("abort", abort);
    }
    return this.update(delivery, result);
  }

  private update(delivery: LinkedDelivery, result: ChannelResult): DeliveryUpdate {
    if (result.outcome === "delivered") {
      return {
        id: delivery.id,
        outcome: "delivered",
        ...(result.state !== undefined ? { state: result.state } : {}),
        ...(result.detail !== undefined ? { detail: result.detail } : {}),
      };
    }
    if (result.outcome === "give_up") return { id: delivery.id, outcome: "failed", error: result.reason };
    const decision = nextAttempt(
      this.retry,
      delivery.attempts,
      Date.parse(delivery.createdAt),
      Date.now(),
      Math.random(),
      result.retryAfterMs,
    );
    if ("giveUp" in decision) {
      return { id: delivery.id, outcome: "failed", error: `${result.reason}; ${decision.giveUp}` };
    }
    return {
      id: delivery.id,
      outcome: "retry",
      error: result.reason,
      nextAttemptAt: new Date(decision.retryAt).toISOString(),
    };
  }
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function untilAborted<T>(signal: AbortSignal, work: Promise<T>): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(new Error("aborted"));
    if (signal.aborted) onAbort();
    signal.addEventListener("abort", onAbort, { once: true });
    work.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}
