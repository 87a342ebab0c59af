import type { NotificationEvent } from "../domain/notification-event.js";
import type { RetryPolicy } from "../domain/notify-retry.js";
import type { ClaimedDelivery, DeliveryUpdate, FanOutPlan, NotifyStore } from "../store/notify-outbox.js";
import { ChainSender, type LinkedDelivery } from "./chain-sender.js";
import type { Channel } from "./channel.js";

/** Sends whole chains somewhere else (the notification thread), answering with every outcome at once. */
export interface ChainTransport {
  /** Whether this transport sends the named channel's deliveries. */
  carries(channel: string): boolean;
  sendChains(chains: LinkedDelivery[][]): Promise<DeliveryUpdate[]>;
}

export interface DispatcherOptions {
  store: NotifyStore;
  /** The configured channels, by name. */
  channels: ReadonlyMap<string, Channel>;
  /**
   * Where the chains of the channels it carries go, in one message per round
   * (the notification thread); the other channels are sent from here.
   */
  transport?: ChainTransport;
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
  private readonly controller = new AbortController();
  private readonly local: ChainSender;

  constructor(private readonly options: DispatcherOptions) {
    this.local = new ChainSender({
      channels: options.channels,
      signal: this.controller.signal,
      ...(options.retry ? { retry: options.retry } : {}),
      ...(options.sendTimeoutMs ? { sendTimeoutMs: options.sendTimeoutMs } : {}),
    });
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
    if (claimed.length > 0) await this.options.store.complete(this.options.owner, await this.send(claimed));
    return { fanned, claimed: claimed.length };
  }

  /** The round's chains: those of the transport's channels there in one message, the rest from here. */
  private async send(claimed: ClaimedDelivery[]): Promise<DeliveryUpdate[]> {
    const there: LinkedDelivery[][] = [];
    const here: LinkedDelivery[][] = [];
    const transport = this.options.transport;
    for (const chain of chains(claimed)) {
      const linked = chain.map((d) => ({ ...d, links: this.options.links(d.event) }));
      (transport?.carries(chain[0]!.channel) ? there : here).push(linked);
    }
    const [fromThere, fromHere] = await Promise.all([
      there.length > 0 ? transport!.sendChains(there) : [],
      this.local.sendChains(here),
    ]);
    return [...fromThere, ...fromHere];
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
