import type { NotificationEvent } from "../domain/notification-event.js";
import { DEFAULT_RETRY_POLICY, nextAttempt, type RetryPolicy } from "../domain/notify-retry.js";
import type { ClaimedDelivery, DeliveryUpdate, FanOutPlan, NotifyStore } from "../store/notify-outbox.js";
import type { Channel, ChannelResult } from "./channel.js";

export interface DispatcherOptions {
  store: NotifyStore;
  /** The configured channels, by name. */
  channels: ReadonlyMap<string, Channel>;
  /** Which channels take an event (the manifests' `notify:` subscriptions). */
  plan: FanOutPlan;
  /** Lease-holder identity (the server process's owner id). */
  owner: string;
  links(event: NotificationEvent): { deploy?: string; environment?: string };
  retry?: RetryPolicy;
  /** Rows fanned out and claimed per round (default 500). */
  batchSize?: number;
  /** How long a claimed delivery is ours before another server may take it (default 60 s). */
  leaseMs?: number;
  /** How long one send may take (default 10 s); past it, the delivery is retried. */
  sendTimeoutMs?: number;
  /** How often an idle dispatcher looks for work written by other servers (default 1 s). */
  idleMs?: number;
  /**
   * How long a woken dispatcher waits before its round (default 1 s), so
   * the events of a busy moment go out in one round of few transactions
   * rather than one round each, and a deploy being admitted is not competing
   * with its own notifications.
   */
  settleMs?: number;
  report(message: string): void;
}

/**
 * Drains the outbox: fans events out into deliveries, claims due deliveries
 * (chains: the pending deliveries of each subject per channel, oldest
 * first), sends the chains concurrently and each chain in order, and records
 * every outcome in one transaction per round. Runs beside the engine, never
 * inside a deploy: a slow or failing channel costs a deploy nothing, and a
 * woken dispatcher lets a moment settle first (`settleMs`), so a busy
 * server spends a few transactions per second on notifications, not a few
 * per event.
 */
export class Dispatcher {
  private running: Promise<void> | undefined;
  private stopped = true;
  private wakeUp: (() => void) | undefined;
  private woken = false;
  private readonly retry: RetryPolicy;
  private readonly controller = new AbortController();

  constructor(private readonly options: DispatcherOptions) {
    this.retry = options.retry ?? DEFAULT_RETRY_POLICY;
  }

  start(): void {
    if (this.running) return;
    this.stopped = false;
    this.running = this.loop();
  }

  /** Stops after the round in progress (sends in flight are aborted and retried later, by lease). */
  async stop(): Promise<void> {
    this.stopped = true;
    this.controller.abort();
    this.wake();
    await this.running;
    this.running = undefined;
  }

  /** Something was written to the outbox: look now rather than at the next idle tick. */
  wake(): void {
    this.woken = true;
    this.wakeUp?.();
  }

  /** One round: fan out, claim, send, record. Returns how much it did (0: nothing to do). */
  async round(): Promise<number> {
    const { fanned, claimed } = await this.work();
    return fanned + claimed;
  }

  private async work(): Promise<{ fanned: number; claimed: number }> {
    const batch = this.batchSize();
    const { fanned, claimed } = await this.options.store.fanOutAndClaim(
      this.options.plan,
      this.options.owner,
      this.options.leaseMs ?? 60_000,
      batch,
    );
    if (claimed.length > 0) {
      const updates = (await Promise.all(chains(claimed).map((chain) => this.sendChain(chain)))).flat();
      await this.options.store.complete(this.options.owner, updates);
    }
    return { fanned, claimed: claimed.length };
  }

  private batchSize(): number {
    return this.options.batchSize ?? 500;
  }

  private async loop(): Promise<void> {
    while (!this.stopped) {
      this.woken = false;
      let full = false;
      try {
        const { fanned, claimed } = await this.work();
        // A full batch means a backlog: go on at once (draining fast). Otherwise
        // everything claimable went out, and what comes next wakes us.
        full = fanned >= this.batchSize() || claimed >= this.batchSize();
      } catch (error) {
        if (this.stopped) break;
        this.options.report(`notifications: ${error instanceof Error ? error.message : String(error)}`);
      }
      if (full || this.stopped) continue;
      if (!this.woken) await this.idle();
      if (this.woken && !this.stopped) await this.settle();
    }
  }

  private settle(): Promise<void> {
    const ms = this.options.settleMs ?? 1_000;
    const signal = this.controller.signal;
    if (ms <= 0 || signal.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      // The listener goes when the wait ends either way: one settle per round must not pile them up.
      const done = () => {
        clearTimeout(timer);
        signal.removeEventListener("abort", done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      timer.unref?.();
      signal.addEventListener("abort", done, { once: true });
    });
  }

  /**
   * Sends one chain in order, each delivery seeing what the one before it
   * left (a Slack message's ts). The first that does not go through holds
   * the rest back: they are released, not attempted.
   */
  private async sendChain(chain: ClaimedDelivery[]): Promise<DeliveryUpdate[]> {
    const updates: DeliveryUpdate[] = [];
    let state = chain[0]!.state;
    for (const [index, delivery] of chain.entries()) {
      const update = await this.send({ ...delivery, state });
      updates.push(update);
      if (update.outcome !== "delivered") {
        for (const rest of chain.slice(index + 1)) updates.push({ id: rest.id, outcome: "released" });
        break;
      }
      if (update.state !== undefined) state = update.state;
    }
    return updates;
  }

  private idle(): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, this.options.idleMs ?? 1_000);
      timer.unref?.();
      this.wakeUp = done;
      function done() {
        clearTimeout(timer);
        resolve();
      }
    });
  }

  private async send(delivery: ClaimedDelivery): Promise<DeliveryUpdate> {
    const channel = this.options.channels.get(delivery.channel);
    if (!channel) {
      return { id: delivery.id, outcome: "failed", error: `channel ${delivery.channel} is not configured` };
    }
    const timeout = AbortSignal.timeout(this.options.sendTimeoutMs ?? 10_000);
    const signal = AbortSignal.any([timeout, this.controller.signal]);
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
            state: delivery.state,
            links: this.options.links(delivery.event),
          },
          signal,
        ),
      );
    } catch (error) {
      result = { outcome: "retry", reason: signal.aborted ? "timed out" : errorText(error) };
    }
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

/** Claimed deliveries grouped by channel and subject, each group in id order (claims come sorted). */
function chains(claimed: ClaimedDelivery[]): ClaimedDelivery[][] {
  const groups = new Map<string, ClaimedDelivery[]>();
  for (const delivery of claimed) {
    const key = `${delivery.channel}\n${delivery.subject}`;
    const group = groups.get(key);
    if (group) group.push(delivery);
    else groups.set(key, [delivery]);
  }
  return [...groups.values()];
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
