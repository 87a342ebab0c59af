// biome-ignore-all lint/suspicious/noExplicitAny: API responses are untyped JSON in these tests
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ERROR_CODES } from "../../src/domain/errors.js";
import type { EngineApi } from "../../src/engine/api.js";
import { EventHub } from "../../src/engine/event-hub.js";
import { statusOf } from "../../src/http/error-mapping.js";
import { DEFAULT_SSE_TIMING, LogStream } from "../../src/http/sse.js";
import { openSocket, parseResponse, rawRequest, readUntilClosed } from "../helpers/raw-http.js";
import { startTurnout, type TestTurnout } from "../helpers/turnout.js";
import { followLog } from "./sse-client.js";

/**
 * Every error the server sends is Turnout's `{"error": {code, message,
 * details?}}` with a stable code and the status of that code, including the
 * ones the framework (Fastify) and Node's HTTP parser produce on their own.
 */
let t: TestTurnout;

beforeAll(async () => {
  t = await startTurnout();
});

afterAll(async () => {
  await t?.stop();
});

/** A Turnout error body, with the status that belongs to its code. */
function expectTurnoutError(res: { status: number; json?: any; body?: any }, code: string): void {
  const body = res.json ?? res.body;
  expect(body, JSON.stringify(res)).toMatchObject({ error: { code, message: expect.any(String) } });
  expect(Object.keys(body)).toEqual(["error"]);
  expect(Object.keys(body.error).every((k) => ["code", "message", "details"].includes(k))).toBe(true);
  expect(res.status).toBe(statusOf(code as any));
}

const auth = () => `Authorization: Bearer ${t.adminToken}\r\n`;

describe("the framework's own errors, in Turnout's format", () => {
  it("every code has one status", () => {
    for (const code of ERROR_CODES) expect(statusOf(code), code).toBeGreaterThanOrEqual(400);
  });

  it("a name over 100 characters is E_INVALID_NAME (422), not the router's 414", async () => {
    const long = "a".repeat(101);
    for (const path of [
      `/api/v1/apps/${long}`,
      `/api/v1/apps/shop/environments/${long}`,
      `/api/v1/apps/${long}/environments/staging/deploys`,
      `/api/v1/hosts/${long}`,
      `/api/v1/deploys?app=${long}`,
    ]) {
      const res = await t.api(
        path.endsWith("deploys") ? "POST" : "GET",
        path,
        path.endsWith("deploys") ? {} : undefined,
      );
      expectTurnoutError(res, "E_INVALID_NAME");
    }
    const label = await t.api("GET", `/api/v1/deploys/${encodeURIComponent(`${long}/staging#1`)}`);
    expectTurnoutError(label, "E_VALIDATION");
  });

  it("a path segment over the router's limit is E_URI_TOO_LONG (414)", async () => {
    const res = await t.api("GET", `/api/v1/apps/${"a".repeat(5000)}`);
    expectTurnoutError(res, "E_URI_TOO_LONG");
  });

  it("a path that does not decode is E_BAD_REQUEST", async () => {
    const res = await t.api("GET", "/api/v1/apps/%E0%A4%A");
    expectTurnoutError(res, "E_BAD_REQUEST");
  });

  it("an unknown route is E_NOT_FOUND; a known path with another method is E_METHOD_NOT_ALLOWED with Allow", async () => {
    expectTurnoutError(await t.api("GET", "/api/v1/nothing"), "E_NOT_FOUND");
    const wrong = await t.api("PATCH", "/api/v1/apps/shop/environments/staging/lock", { reason: "x" });
    expectTurnoutError(wrong, "E_METHOD_NOT_ALLOWED");
    expect(wrong.headers.get("allow")).toBe("DELETE, PUT");
    expect(wrong.body.error.details).toEqual({ allowed: ["DELETE", "PUT"] });
    const list = await t.api("DELETE", "/api/v1/apps");
    expectTurnoutError(list, "E_METHOD_NOT_ALLOWED");
    expect(list.headers.get("allow")).toBe("GET, HEAD");
    // Nothing was locked by the refused PATCH.
    expect(await t.store.locks.get("shop", "staging")).toBeUndefined();
  });

  it("unsupported media type, malformed JSON, a body over the limit", async () => {
    const post = (type: string, body: string) =>
      fetch(`${t.url}/api/v1/apps/shop/environments/staging/lock`, {
        method: "PUT",
        headers: { authorization: `Bearer ${t.adminToken}`, "content-type": type },
        body,
      }).then(async (r) => ({ status: r.status, body: await r.json() }));
    expectTurnoutError(await post("text/plain", "reason"), "E_UNSUPPORTED_MEDIA_TYPE");
    expectTurnoutError(await post("application/json", '{"reason": '), "E_BAD_REQUEST");
    expectTurnoutError(
      await post("application/json", JSON.stringify({ reason: "x".repeat(t.settings.bodyLimit) })),
      "E_PAYLOAD_TOO_LARGE",
    );
  });

  it("a bad Content-Length, a malformed request line, oversized headers: Node's parser errors", async () => {
    const badLength = await rawRequest(
      t.url,
      `PUT /api/v1/apps/shop/environments/staging/lock HTTP/1.1\r\nHost: x\r\n${auth()}Content-Type: application/json\r\nContent-Length: abc\r\n\r\n{}`,
    );
    expectTurnoutError(badLength, "E_BAD_REQUEST");
    expect(badLength.headers["connection"]).toBe("close");

    const garbage = await rawRequest(t.url, "THIS IS NOT HTTP\r\n\r\n");
    expectTurnoutError(garbage, "E_BAD_REQUEST");

    const huge = await rawRequest(
      t.url,
      `GET /api/v1/apps HTTP/1.1\r\nHost: x\r\n${auth()}X-Filler: ${"f".repeat(20_000)}\r\n\r\n`,
    );
    expectTurnoutError(huge, "E_HEADERS_TOO_LARGE");
  });

  it("a body shorter than its Content-Length, then the client gives up: the server carries on", async () => {
    const socket = await openSocket(t.url);
    const closed = readUntilClosed(socket, 5_000);
    socket.write(
      `PUT /api/v1/apps/shop/environments/staging/lock HTTP/1.1\r\nHost: x\r\n${auth()}Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"reason"`,
    );
    socket.destroy();
    await closed;
    expect((await t.api("GET", "/api/v1/apps")).status).toBe(200);
    expect(await t.store.locks.get("shop", "staging")).toBeUndefined();
  });

  it("a request while the server shuts down gets E_UNAVAILABLE and the connection is closed", async () => {
    const other = await startTurnout();
    try {
      const socket = await openSocket(other.url);
      const answer = readUntilClosed(socket);
      // The request is under way (headers started) when the server begins to close.
      socket.write(`GET /api/v1/apps HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${other.adminToken}\r\n`);
      await new Promise((resolve) => setTimeout(resolve, 100));
      const closing = other.server.close();
      await new Promise((resolve) => setTimeout(resolve, 100));
      socket.write("\r\n");
      const res = parseResponse((await answer).text);
      await closing;
      expect(res).toBeDefined();
      expectTurnoutError(res!, "E_UNAVAILABLE");
      expect(res!.headers["connection"]).toBe("close");
    } finally {
      await other.stop();
    }
  });
});

describe("SSE errors", () => {
  let server: Server;
  let url: string;

  beforeAll(async () => {
    const hub = new EventHub();
    const engine = { subscribe: hub.subscribe.bind(hub) } as unknown as EngineApi;
    // A stream of a deploy the store does not have: its first read fails, after the headers are out.
    server = createServer((_request, response) => {
      new LogStream({
        store: t.store,
        engine,
        deployId: 987_654,
        from: 0,
        response,
        timing: DEFAULT_SSE_TIMING,
        onError: () => undefined,
        onClose: () => undefined,
      }).start();
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    await new Promise((resolve) => server?.close(resolve));
  });

  it("a stream that fails says so with an `error` event in the API's error format, then ends", async () => {
    const result = await followLog(url, "unused");
    expect(result.endedByServer).toBe(true);
    const error = result.events.find((e) => e.event === "error");
    expect(error).toBeDefined();
    expect(JSON.parse(error!.data)).toEqual({
      error: { code: "E_NOT_FOUND", message: "deploy 987654 not found", details: { id: 987654 } },
    });
  });
});
