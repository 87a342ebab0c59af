import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { verifySignature } from "../../src/notify/signature.js";

/**
 * Loopback stand-ins for the receivers of notifications. Each CHECKS what it
 * gets (signatures, tokens, payload shape) and records it, so tests assert
 * sequences rather than trust the sender.
 */
async function listen(server: Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

async function bodyOf(request: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of request) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}

function close(server: Server): Promise<void> {
  server.closeAllConnections();
  return new Promise((resolve) => server.close(() => resolve()));
}

export interface WebhookReceiver {
  url: string;
  /** Accepted (signed, well-formed) payloads, in arrival order. */
  received: any[];
  /** Requests refused for a bad or missing signature. */
  badSignatures: number;
  /** Requests answered 503 while down. */
  refusedWhileDown: number;
  /** While true every request is answered 503 (after its signature is checked). */
  down: boolean;
  close(): Promise<void>;
}

export async function startWebhookReceiver(secret: string): Promise<WebhookReceiver> {
  const receiver: WebhookReceiver = {
    url: "",
    received: [],
    badSignatures: 0,
    refusedWhileDown: 0,
    down: false,
    close: () => close(server),
  };
  const server = createServer(async (request: IncomingMessage, response: ServerResponse) => {
    const body = await bodyOf(request);
    const ok = verifySignature(
      secret,
      {
        signature: request.headers["x-turnout-signature"] as string | undefined,
        timestamp: request.headers["x-turnout-timestamp"] as string | undefined,
      },
      body,
    );
    if (!ok || request.headers["content-type"] !== "application/json") {
      receiver.badSignatures++;
      response.writeHead(401).end();
      return;
    }
    if (receiver.down) {
      receiver.refusedWhileDown++;
      response.writeHead(503).end();
      return;
    }
    const payload = JSON.parse(body);
    // The headers say what the body says.
    if (
      request.headers["x-turnout-event"] !== payload.event.kind ||
      request.headers["x-turnout-delivery"] !== String(payload.delivery)
    ) {
      receiver.badSignatures++;
      response.writeHead(400).end();
      return;
    }
    receiver.received.push(payload);
    response.writeHead(204).end();
  });
  receiver.url = await listen(server);
  return receiver;
}

export interface SlackCall {
  method: "chat.postMessage" | "chat.update";
  channel: string;
  ts?: string;
  text: string;
  blocks: unknown[];
}

export interface FakeSlack {
  /** The Web API base to configure (`api_url`). */
  apiUrl: string;
  /** An incoming-webhook URL it also serves. */
  webhookUrl: string;
  calls: SlackCall[];
  /** Incoming-webhook posts. */
  hooks: { text: string; blocks: unknown[] }[];
  refusedAuth: number;
  close(): Promise<void>;
}

/**
 * Slack's Web API as documented: form-encoded or JSON arguments, the bot
 * token as `Authorization: Bearer`, `{ok: false, error}` answers with HTTP
 * 200; chat.update needs the channel id and ts chat.postMessage returned.
 */
export async function startFakeSlack(token: string): Promise<FakeSlack> {
  const fake: FakeSlack = {
    apiUrl: "",
    webhookUrl: "",
    calls: [],
    hooks: [],
    refusedAuth: 0,
    close: () => close(server),
  };
  const messages = new Map<string, string>();
  let next = 1;
  const server = createServer(async (request, response) => {
    const text = await bodyOf(request);
    const reply = (value: unknown) => {
      response.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(value));
    };
    if (request.url === "/hooks/T000/B000/XXXX") {
      const body = JSON.parse(text);
      fake.hooks.push({ text: body.text, blocks: body.blocks });
      response.writeHead(200, { "content-type": "text/plain" }).end("ok");
      return;
    }
    if (request.headers.authorization !== `Bearer ${token}`) {
      fake.refusedAuth++;
      reply({ ok: false, error: "invalid_auth" });
      return;
    }
    const args: Record<string, unknown> = request.headers["content-type"]?.startsWith("application/json")
      ? JSON.parse(text)
      : Object.fromEntries(new URLSearchParams(text));
    const blocks = typeof args["blocks"] === "string" ? JSON.parse(args["blocks"]) : args["blocks"];
    const method = request.url?.replace(/^\/api\//, "");
    if (method === "chat.postMessage") {
      if (args["channel"] !== "#deploys") return reply({ ok: false, error: "channel_not_found" });
      const ts = `1700000000.${String(next++).padStart(6, "0")}`;
      messages.set(ts, "C0DEPLOYS");
      fake.calls.push({ method, channel: String(args["channel"]), text: String(args["text"]), blocks });
      return reply({ ok: true, channel: "C0DEPLOYS", ts });
    }
    if (method === "chat.update") {
      const ts = String(args["ts"]);
      if (messages.get(ts) !== args["channel"]) return reply({ ok: false, error: "message_not_found" });
      fake.calls.push({ method, channel: String(args["channel"]), ts, text: String(args["text"]), blocks });
      return reply({ ok: true, channel: args["channel"], ts });
    }
    reply({ ok: false, error: "unknown_method" });
  });
  const base = await listen(server);
  fake.apiUrl = `${base}/api/`;
  fake.webhookUrl = `${base}/hooks/T000/B000/XXXX`;
  return fake;
}
