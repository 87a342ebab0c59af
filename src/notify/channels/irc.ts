import { randomBytes } from "node:crypto";
import irc, { type Client } from "irc-framework";
import { z } from "zod";
import type { Channel, ChannelContext, ChannelDelivery, ChannelFactory, ChannelResult } from "../channel.js";
import { channelOptions } from "./options.js";

/**
 * IRC: one line per event in a channel, through irc-framework. The server
 * keeps one connection per channel setting, made on the first delivery and
 * again after it drops. IRC acknowledges nothing, so each message is followed
 * by a PING with a fresh token: the server answers PONG only after reading
 * every line before it, which makes "delivered" mean "the IRC server has it".
 */
const schema = z
  .object({
    server: z.string().min(1),
    port: z.number().int().min(1).max(65535).default(6697),
    tls: z.boolean().default(true),
    nick: z
      .string()
      .regex(/^[A-Za-z[\]\\`_^{|}][A-Za-z0-9[\]\\`_^{|}-]{0,29}$/, "not a valid IRC nick")
      .default("turnout"),
    channel: z.string().regex(/^[#&][^\s,\x07]{1,49}$/, "an IRC channel such as #deploys"),
    /** Server password (`password_env`). */
    password: z.string().optional(),
  })
  .strict();
type IrcOptions = z.infer<typeof schema>;

/** IRC lines end at CR/LF and are limited to 512 bytes: one event is one line, shortened if need be. */
export function ircLine(delivery: ChannelDelivery): string {
  const link = delivery.links.deploy ? ` ${delivery.links.deploy}` : "";
  const text = `${delivery.event.text}${link}`.replace(/[\r\n\0]+/g, " ");
  return text.length > 400 ? `${text.slice(0, 399)}…` : text;
}

class IrcChannel implements Channel {
  readonly type = "irc";
  private client: Client | undefined;
  private ready: Promise<Client> | undefined;

  constructor(
    readonly name: string,
    private readonly options: IrcOptions,
    private readonly context: ChannelContext,
  ) {}

  async send(delivery: ChannelDelivery, signal: AbortSignal): Promise<ChannelResult> {
    try {
      const client = await abortable(this.connect(), signal);
      const token = randomBytes(8).toString("hex");
      const acknowledged = new Promise<void>((resolve) => {
        const onPong = (event: { message?: string }) => {
          if (event.message !== token) return;
          client.off("pong", onPong);
          resolve();
        };
        client.on("pong", onPong);
      });
      client.say(this.options.channel, ircLine(delivery));
      client.ping(token);
      await abortable(acknowledged, signal);
      return { outcome: "delivered" };
    } catch (error) {
      this.drop();
      return { outcome: "retry", reason: `IRC: ${(error as Error).message}` };
    }
  }

  async close(): Promise<void> {
    const client = this.client;
    this.drop();
    if (client?.connected) client.quit("turnout stopping");
  }

  private connect(): Promise<Client> {
    if (this.ready) return this.ready;
    const client = new irc.Client();
    this.client = client;
    const ready = new Promise<Client>((resolve, reject) => {
      client.once("registered", () => {
        client.join(this.options.channel);
        resolve(client);
      });
      client.once("socket close", () => {
        reject(new Error("connection closed"));
        if (this.client === client) this.drop();
      });
      client.on("socket error", (error: Error) => {
        this.context.report(`irc ${this.name}: ${error.message}`);
      });
    });
    ready.catch(() => undefined);
    this.ready = ready;
    client.connect({
      host: this.options.server,
      port: this.options.port,
      tls: this.options.tls,
      nick: this.options.nick,
      username: this.options.nick,
      gecos: "Turnout deploy notifications",
      ...(this.options.password ? { password: this.options.password } : {}),
      auto_reconnect: false,
    });
    return ready;
  }

  private drop(): void {
    const client = this.client;
    this.client = undefined;
    this.ready = undefined;
    if (client) {
      client.removeAllListeners("pong");
      if (client.connected) client.quit();
    }
  }
}

function abortable<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(new Error("timed out"));
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(new Error("timed out"));
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener("abort", onAbort);
        resolve(value);
      },
      (error) => {
        signal.removeEventListener("abort", onAbort);
        reject(error);
      },
    );
  });
}

export const ircChannels: ChannelFactory = {
  type: "irc",
  create(name: string, options: Record<string, unknown>, context: ChannelContext): Channel {
    return new IrcChannel(name, channelOptions(schema, name, options), context);
  },
};
