import type { ConfigProvider } from "../config/config-provider.js";
import type { PokeSource } from "./api.js";

/**
 * Looks at every app's repositories on the app's interval (jittered by ±20 %
 * so that many apps configured alike do not fetch in the same second), and
 * whenever poked (webhooks, pushes). Pokes of one app coalesce: while a look
 * runs, any number of further pokes share one more look after it, so a storm
 * of webhooks costs at most two fetches per app.
 *
 * Polling is what makes Turnout work with no inbound traffic at all; webhooks
 * only make it sooner.
 */
export interface PollerOptions {
  config: ConfigProvider;
  look(app: string, source: PokeSource): Promise<void>;
  report(error: unknown): void;
  /** For tests: the random source of the jitter. */
  random?: () => number;
}

interface AppState {
  running: Promise<void> | undefined;
  next: Promise<void> | undefined;
  nextSource: PokeSource;
  dueAt: number;
}

const TICK_MS = 250;

export class Poller {
  private readonly apps = new Map<string, AppState>();
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly options: PollerOptions) {}

  start(): void {
    this.timer = setInterval(() => this.tick(), TICK_MS);
  }

  /** Stops polling and waits for looks in progress, so nothing fetches into a directory being removed. */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    const inFlight = [...this.apps.values()].flatMap((state) => [state.running, state.next]);
    await Promise.allSettled(inFlight.filter((p): p is Promise<void> => p !== undefined));
  }

  /** Looks at `app` now (or right after the look in progress); resolves when that look is done. */
  poke(app: string, source: PokeSource): Promise<void> {
    const state = this.state(app);
    if (!state.running) {
      state.running = this.run(app, state, source);
      return state.running;
    }
    if (!state.next) {
      state.nextSource = source;
      state.next = state.running.then(() => {
        state.next = undefined;
        state.running = this.run(app, state, state.nextSource);
        return state.running;
      });
    }
    return state.next;
  }

  private async run(app: string, state: AppState, source: PokeSource): Promise<void> {
    try {
      await this.options.look(app, source);
    } catch (error) {
      this.options.report(error);
    } finally {
      state.running = undefined;
      state.dueAt = Date.now() + this.interval(app);
    }
  }

  private tick(): void {
    const apps = this.options.config.current().apps;
    const now = Date.now();
    for (const name of apps.keys()) {
      const state = this.state(name);
      if (!state.running && state.dueAt <= now) void this.poke(name, "poll");
    }
    for (const name of [...this.apps.keys()]) if (!apps.has(name)) this.apps.delete(name);
  }

  private state(app: string): AppState {
    let state = this.apps.get(app);
    if (!state) {
      // A first look soon after start (spread over the first interval's fifth), then on the interval.
      state = {
        running: undefined,
        next: undefined,
        nextSource: "poll",
        dueAt: Date.now() + this.interval(app) * 0.2 * this.random(),
      };
      this.apps.set(app, state);
    }
    return state;
  }

  private interval(app: string): number {
    const base = this.options.config.current().apps.get(app)?.pollIntervalMs ?? 60_000;
    return base * (0.8 + 0.4 * this.random());
  }

  private random(): number {
    return (this.options.random ?? Math.random)();
  }
}
