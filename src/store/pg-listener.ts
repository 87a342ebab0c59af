import type pg from "pg";

export interface PgListenerOptions {
  url: string;
  /** Resolves the channel name on the listening connection (it depends on the schema). */
  channel: (client: pg.Client) => Promise<string>;
  onMessage: (payload: string) => void;
  /** Listening (again): messages may have been missed meanwhile, so whoever relies on them should look. */
  onListening: () => void;
  report: (message: string) => void;
  /** First wait before reconnecting; doubles up to 5 s. */
  retryMs?: number;
}

/**
 * One dedicated PostgreSQL connection held in LISTEN (a pooled connection
 * cannot listen: the pool hands it to other queries). It reconnects by
 * itself when the database goes away; NOTIFY is not durable, so after every
 * (re)connection `onListening` lets the caller re-read the tables.
 */
export class PgListener {
  private client: pg.Client | undefined;
  private closed = false;
  private retryTimer: NodeJS.Timeout | undefined;
  private wait: number;

  constructor(private readonly options: PgListenerOptions) {
    this.wait = options.retryMs ?? 250;
  }

  async start(): Promise<void> {
    await this.connect();
  }

  private async connect(): Promise<void> {
    // Loaded here, not with the module: only servers on PostgreSQL listen, and a default one should not load the driver.
    const { Client } = (await import("pg")).default;
    const client = new Client({ connectionString: this.options.url });
    client.on("error", (error) => this.lost(client, error));
    client.on("end", () => this.lost(client, new Error("connection ended")));
    client.on("notification", (n) => {
      if (n.payload !== undefined) this.options.onMessage(n.payload);
    });
    this.client = client;
    await client.connect();
    const channel = await this.options.channel(client);
    // The channel name is made by the database from md5: an identifier, but quoted anyway.
    await client.query(`LISTEN "${channel.replaceAll('"', "")}"`);
    this.wait = this.options.retryMs ?? 250;
    this.options.onListening();
  }

  private lost(client: pg.Client, error: Error): void {
    if (this.client !== client || this.closed) return;
    this.client = undefined;
    client.end().catch(() => undefined);
    this.options.report(`listening for routed host calls failed (${error.message}); retrying`);
    this.retry();
  }

  private retry(): void {
    if (this.closed) return;
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => {
      this.connect().catch((error: Error) => {
        const client = this.client;
        this.client = undefined;
        client?.end().catch(() => undefined);
        this.options.report(`listening for routed host calls failed (${error.message}); retrying`);
        this.wait = Math.min(this.wait * 2, 5000);
        this.retry();
      });
    }, this.wait);
    this.retryTimer.unref();
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.retryTimer);
    const client = this.client;
    this.client = undefined;
    await client?.end().catch(() => undefined);
  }
}
