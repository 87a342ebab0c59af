// biome-ignore-all lint/suspicious/noExplicitAny: response bodies are untyped JSON
import { connect, type Socket } from "node:net";

/**
 * HTTP spoken by hand over a socket, for what fetch() will not send
 * (malformed requests, GET bodies, stalled bodies) and to see exactly what
 * the server answers and when it closes the connection.
 */
export interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
  /** The parsed JSON body, when it is JSON. */
  json: any;
}

export function parseResponse(text: string): RawResponse | undefined {
  const split = text.indexOf("\r\n\r\n");
  if (split < 0) return undefined;
  const [statusLine, ...lines] = text.slice(0, split).split("\r\n");
  const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(statusLine ?? "")?.[1]);
  const headers: Record<string, string> = {};
  for (const line of lines) {
    const colon = line.indexOf(":");
    headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  let body = text.slice(split + 4);
  const length = headers["content-length"];
  if (length !== undefined) body = Buffer.from(body).subarray(0, Number(length)).toString();
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch {
    json = undefined;
  }
  return { status, headers, body, json };
}

export function openSocket(url: string): Promise<Socket> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect({ host: hostname, port: Number(port) }, () => resolve(socket));
    socket.once("error", reject);
  });
}

/** Everything the server sends until it closes the connection (or `timeoutMs` passes: then `closed` is false). */
export function readUntilClosed(
  socket: Socket,
  timeoutMs = 10_000,
): Promise<{ text: string; closed: boolean }> {
  return new Promise((resolve) => {
    let text = "";
    const timer = setTimeout(() => {
      socket.destroy();
      resolve({ text, closed: false });
    }, timeoutMs);
    socket.on("data", (chunk: Buffer) => {
      text += chunk.toString("utf8");
    });
    socket.on("error", () => undefined);
    socket.once("close", () => {
      clearTimeout(timer);
      resolve({ text, closed: true });
    });
  });
}

/** Sends `request` as is (add `Connection: close` to get one answer) and returns what came back. */
export async function rawRequest(url: string, request: string | Buffer): Promise<RawResponse> {
  const socket = await openSocket(url);
  const done = readUntilClosed(socket);
  socket.write(request);
  const { text } = await done;
  const parsed = parseResponse(text);
  if (!parsed) throw new Error(`no HTTP response: ${JSON.stringify(text.slice(0, 200))}`);
  return parsed;
}
