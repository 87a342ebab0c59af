import { createHmac } from "node:crypto";
import { createServer, type IncomingMessage } from "node:http";
import type { AddressInfo } from "node:net";

/**
 * A stand-in for Slack's side of slash commands: the response_url endpoints
 * Slack hands out with each command (api.slack.com/interactivity/handling#message_responses)
 * and a sender that signs commands as Slack does. Like Slack, a response_url
 * takes JSON messages (`text`, `response_type` in_channel | ephemeral,
 * optional `replace_original` / `delete_original`) and at most 5 of them; a
 * sixth is answered 404 `used_url`, an unknown one 404 `no_active_hooks`.
 * Everything received is kept, and anything malformed is recorded as a
 * problem the test can assert is empty.
 */
export interface FakeSlack {
  /** The origin, for slack.response_url_origins. */
  origin: string;
  /** A new response_url, as Slack gives one per command. */
  responseUrl(): string;
  /** Messages posted to one response_url, in order. */
  messages(url: string): Array<{ response_type: string; text: string }>;
  /** What was wrong with requests received (wrong method, content type, body shape). */
  problems: string[];
  close(): Promise<void>;
}

const ALLOWED_KEYS = new Set(["text", "response_type", "replace_original", "delete_original", "blocks"]);

export async function startFakeSlack(): Promise<FakeSlack> {
  const hooks = new Map<string, Array<{ response_type: string; text: string }>>();
  const problems: string[] = [];
  let next = 1;
  const server = createServer(async (request, response) => {
    const body = await readBody(request);
    const answer = (status: number, text: string) => {
      response.writeHead(status, { "content-type": "text/plain" });
      response.end(text);
    };
    const list = hooks.get(request.url ?? "");
    if (!list) return answer(404, "no_active_hooks");
    if (request.method !== "POST") {
      problems.push(`${request.method} ${request.url}`);
      return answer(405, "method_not_allowed");
    }
    if (!/^application\/json\b/.test(request.headers["content-type"] ?? "")) {
      problems.push(`content-type ${request.headers["content-type"]}`);
      return answer(400, "invalid_payload");
    }
    let message: Record<string, unknown>;
    try {
      message = JSON.parse(body);
    } catch {
      problems.push(`not JSON: ${body.slice(0, 80)}`);
      return answer(400, "invalid_payload");
    }
    const unknown = Object.keys(message).filter((k) => !ALLOWED_KEYS.has(k));
    if (
      typeof message["text"] !== "string" ||
      !["in_channel", "ephemeral"].includes(String(message["response_type"])) ||
      unknown.length > 0
    ) {
      problems.push(`bad message: ${body.slice(0, 200)}`);
      return answer(400, "invalid_payload");
    }
    if (list.length >= 5) {
      problems.push(`more than 5 posts to ${request.url}`);
      return answer(404, "used_url");
    }
    list.push({ response_type: String(message["response_type"]), text: message["text"] });
    answer(200, "ok");
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  let closed: Promise<void> | undefined;
  return {
    origin,
    responseUrl() {
      const path = `/commands/T0001/${next++}/${Math.random().toString(36).slice(2)}`;
      hooks.set(path, []);
      return origin + path;
    },
    messages(url) {
      return hooks.get(new URL(url).pathname) ?? [];
    },
    problems,
    close() {
      closed ??= new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      });
      return closed;
    },
  };
}

export interface SlashCommandFields {
  user_id: string;
  text: string;
  response_url: string;
  command?: string;
}

/** The body and headers of a slash command, signed as Slack signs it (now, unless `timestamp` says otherwise). */
export function signedCommand(
  secret: string,
  fields: SlashCommandFields,
  timestamp = Math.floor(Date.now() / 1000),
): { body: string; headers: Record<string, string> } {
  const body = new URLSearchParams({
    token: "gIkuvaNzQIHg97ATvDxqgjtO",
    team_id: "T0001",
    team_domain: "example",
    channel_id: "C2147483705",
    channel_name: "deploys",
    user_id: fields.user_id,
    user_name: "someone",
    command: fields.command ?? "/turnout",
    text: fields.text,
    api_app_id: "A123456",
    response_url: fields.response_url,
    trigger_id: "13345224609.738474920.8088930838d88f008e0",
  }).toString();
  const ts = String(timestamp);
  return {
    body,
    headers: {
      "content-type": "application/x-www-form-urlencoded",
      "x-slack-request-timestamp": ts,
      // As Slack documents it, computed here independently of the server's code.
      "x-slack-signature": `v0=${createHmac("sha256", secret).update(`v0:${ts}:${body}`).digest("hex")}`,
    },
  };
}

function readBody(request: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    request.on("data", (chunk: Buffer) => chunks.push(chunk));
    request.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    request.on("error", reject);
  });
}
