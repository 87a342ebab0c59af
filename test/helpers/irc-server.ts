import type { AddressInfo } from "node:net";
import { createServer, type Server, type Socket } from "node:net";

/**
 * A minimal IRC server (RFC 1459/2812 subset): registration with NICK and
 * USER (001 welcome), CAP LS answered with no capabilities, JOIN, PRIVMSG,
 * PING/PONG and QUIT. It records every line a client sends, and the messages
 * of each channel, in order; a PRIVMSG to a channel the client has not
 * joined is refused (404), as a `+n` channel would.
 */
export interface IrcServer {
  port: number;
  lines: string[];
  messages: { from: string; target: string; text: string }[];
  /** Drops every connection (the network went away). */
  dropAll(): void;
  close(): Promise<void>;
}

export async function startIrcServer(): Promise<IrcServer> {
  const sockets = new Set<Socket>();
  const state: IrcServer = {
    port: 0,
    lines: [],
    messages: [],
    dropAll: () => {
      for (const s of sockets) s.destroy();
    },
    close: () => {
      state.dropAll();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => undefined);
    let nick = "";
    let user = false;
    let welcomed = false;
    const joined = new Set<string>();
    const send = (line: string) => socket.write(`${line}\r\n`);
    let buffer = "";
    socket.setEncoding("utf8");
    socket.on("data", (data: string) => {
      buffer += data;
      let end = buffer.indexOf("\n");
      while (end >= 0) {
        const line = buffer.slice(0, end).replace(/\r$/, "");
        buffer = buffer.slice(end + 1);
        end = buffer.indexOf("\n");
        if (line) handle(line);
      }
    });
    function handle(line: string) {
      state.lines.push(line);
      const [head, ...rest] = line.split(" :");
      const trailing = rest.join(" :");
      const [command, ...params] = head!.split(" ");
      switch (command?.toUpperCase()) {
        case "CAP":
          if (params[0] === "LS") send(":irc.test CAP * LS :");
          break;
        case "NICK":
          nick = params[0] ?? trailing;
          break;
        case "USER":
          user = true;
          break;
        case "PING":
          send(`:irc.test PONG irc.test :${trailing || params[0]}`);
          break;
        case "JOIN": {
          const channel = params[0] ?? trailing;
          joined.add(channel);
          send(`:${nick}!${nick}@127.0.0.1 JOIN ${channel}`);
          break;
        }
        case "PRIVMSG": {
          const target = params[0]!;
          if (target.startsWith("#") && !joined.has(target)) {
            send(`:irc.test 404 ${nick} ${target} :Cannot send to channel`);
            break;
          }
          state.messages.push({ from: nick, target, text: trailing });
          break;
        }
        case "QUIT":
          socket.end();
          break;
      }
      if (!welcomed && nick && user) {
        welcomed = true;
        send(`:irc.test 001 ${nick} :Welcome to the test network ${nick}`);
        send(`:irc.test 376 ${nick} :End of /MOTD command.`);
      }
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  state.port = (server.address() as AddressInfo).port;
  return state;
}
