import type { ConfigSnapshot } from "../domain/app-config.js";
import { matchesPattern, type NotificationEvent } from "../domain/notification-event.js";
import type { RetryPolicy } from "../domain/notify-retry.js";
import type { NotifyStore } from "../store/notify-outbox.js";
import type { Channel } from "./channel.js";
import { type ChainTransport, Dispatcher } from "./dispatcher.js";

export interface NotifierOptions {
  store: NotifyStore;
  channels: ReadonlyMap<string, Channel>;
  /** The notification thread, which sends its channels' chains (see Dispatcher). */
  transport?: ChainTransport;
  /** The current configuration, with each environment's `notify:` subscriptions. */
  config(): ConfigSnapshot;
  /** Apps whose manifest is not loaded yet (their events wait rather than go nowhere). */
  loading(app: string): boolean;
  owner: string;
  /** Base of links to deploys: the server's public URL. */
  publicUrl: string;
  retry?: RetryPolicy;
  report(message: string): void;
  /** Tuning (tests, benchmarks). */
  batchSize?: number;
  idleMs?: number;
  settleMs?: number;
  sendTimeoutMs?: number;
  leaseMs?: number;
}

/**
 * Notifications of one server process: decides which channels take an event
 * (the environment's subscriptions) and runs the dispatcher that drains the
 * outbox. Events themselves are written by the store, in the transactions of
 * the changes they describe.
 */
export class Notifier {
  private readonly dispatcher: Dispatcher;

  constructor(private readonly options: NotifierOptions) {
    this.dispatcher = new Dispatcher({
      store: options.store,
      channels: options.channels,
      ...(options.transport ? { transport: options.transport } : {}),
      plan: (event) => this.subscribers(event),
      owner: options.owner,
      links: (event) => this.links(event),
      report: options.report,
      ...(options.retry ? { retry: options.retry } : {}),
      ...(options.batchSize ? { batchSize: options.batchSize } : {}),
      ...(options.idleMs ? { idleMs: options.idleMs } : {}),
      ...(options.settleMs !== undefined ? { settleMs: options.settleMs } : {}),
      ...(options.sendTimeoutMs ? { sendTimeoutMs: options.sendTimeoutMs } : {}),
      ...(options.leaseMs ? { leaseMs: options.leaseMs } : {}),
    });
  }

  start(): void {
    this.dispatcher.start();
  }

  wake(): void {
    this.dispatcher.wake();
  }

  /** One dispatcher round by hand (tests, benchmarks). */
  round(): Promise<number> {
    return this.dispatcher.round();
  }

  async stop(): Promise<void> {
    await this.dispatcher.stop();
    await Promise.allSettled([...this.options.channels.values()].map((c) => c.close?.()));
  }

  /**
   * The channels subscribed to an event, each once, in the order the
   * manifest names them. An app that is gone takes nothing; one whose
   * manifest is still loading holds its events back.
   */
  subscribers(event: NotificationEvent): string[] | "later" {
    const app = this.options.config().apps.get(event.app);
    if (!app) return this.options.loading(event.app) ? "later" : [];
    const subscriptions = app.environments[event.env]?.notify ?? [];
    const names: string[] = [];
    for (const s of subscriptions) {
      if (names.includes(s.channel) || !this.options.channels.has(s.channel)) continue;
      if (s.events.some((pattern) => matchesPattern(pattern, event.kind))) names.push(s.channel);
    }
    return names;
  }

  private links(event: NotificationEvent): { deploy?: string; environment?: string } {
    const base = this.options.publicUrl;
    // The web UI routes on the fragment (web/src/lib/router.ts).
    const env = `${base}/#/apps/${encodeURIComponent(event.app)}/${encodeURIComponent(event.env)}`;
    return event.deploy
      ? { deploy: `${base}/#/deploys/${event.deploy.id}`, environment: env }
      : { environment: env };
  }
}
