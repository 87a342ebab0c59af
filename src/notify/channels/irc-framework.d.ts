// The part of irc-framework (which ships no types) the IRC channel uses.
declare module "irc-framework" {
  import { EventEmitter } from "node:events";

  export interface ConnectOptions {
    host: string;
    port: number;
    nick: string;
    username?: string;
    gecos?: string;
    tls?: boolean;
    password?: string;
    auto_reconnect?: boolean;
    ping_interval?: number;
    ping_timeout?: number;
  }

  export class Client extends EventEmitter {
    constructor(options?: Record<string, unknown>);
    connected: boolean;
    connect(options: ConnectOptions): void;
    join(channel: string, key?: string): void;
    say(target: string, message: string): void;
    notice(target: string, message: string): void;
    ping(message?: string): void;
    quit(message?: string): void;
    removeAllListeners(event?: string): this;
  }

  const irc: { Client: typeof Client };
  export default irc;
}
