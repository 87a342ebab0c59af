import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { ApiClient, ApiError, ConnectionError } from "../../src/cli/api-client.js";
import { followDeploy } from "../../src/cli/follow.js";
import { deployFixture } from "./fixtures.js";
import { Buffer as Capture } from "./helpers.js";

/**
 * The reconnect logic needs a connection that drops at a chosen moment, which
 * the real server never does on purpose: this small server speaks the log
 * stream protocol of GET /api/v1/deploys/:id/log and misbehaves on demand.
 */
type Handler = (request: IncomingMessage, response: ServerResponse, attempt: number) => void;

let server: Server | undefined;

async function serve(handler: Handler): Promise<{ url: string; requests: IncomingMessage[] }> {
  const requests: IncomingMessage[] = [];
  server = createServer((request, response) => {
    requests.push(request);
    handler(request, response, requests.length);
  });
  await new Promise<void>((resolve) => server!.listen(0, "127.0.0.1", resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, requests };
}

afterEach(async () => {
  server?.closeAllConnections();
  await new Promise((resolve) => server?.close(resolve));
  server = undefined;
});

function sse(response: ServerResponse, event: string, data: unknown, id?: number): void {
  response.write(
    `${id === undefined ? "" : `id: ${id}\n`}event: ${event}\ndata: ${JSON.stringify(data)}\n\n`,
  );
}

function openStream(response: ServerResponse): void {
  response.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
}

const running = deployFixture();
const succeeded = deployFixture({ status: "succeeded", phase: null, finishedAt: "2024-05-01T12:00:15.000Z" });

describe("followDeploy", () => {
  it("reconnects after a drop with Last-Event-ID and neither loses nor repeats output", async () => {
    const { url, requests } = await serve((_request, response, attempt) => {
      openStream(response);
      if (attempt === 1) {
        sse(response, "status", { deploy: running });
        sse(response, "log", { offset: 0, text: "one\n" }, 4);
        sse(response, "log", { offset: 4, text: "twö\n" }, 9);
        // Drop the connection in the middle of an event.
        response.write('event: log\ndata: {"offset":9,');
        setTimeout(() => response.socket?.destroy(), 20);
        return;
      }
      // A server resuming from a chunk boundary before the client's position: overlap to trim.
      sse(response, "log", { offset: 4, text: "twö\nthree\n" }, 15);
      sse(response, "end", { deploy: succeeded });
      response.end();
    });

    const stdout = new Capture();
    const stderr = new Capture();
    const final = await followDeploy({
      client: new ApiClient({ server: url, token: "t" }),
      deployId: 17,
      stdout,
      stderr,
      json: false,
    });

    expect(final.status).toBe("succeeded");
    expect(stdout.text).toBe("one\ntwö\nthree\n");
    expect(requests).toHaveLength(2);
    expect(requests[0]!.url).toBe("/api/v1/deploys/17/log?offset=0");
    expect(requests[1]!.url).toBe("/api/v1/deploys/17/log?offset=9");
    expect(requests[1]!.headers["last-event-id"]).toBe("9");
    expect(requests[1]!.headers.accept).toBe("text/event-stream");
    expect(requests[1]!.headers.authorization).toBe("Bearer t");
    // Not a terminal: one plain status line per change, no carriage returns.
    expect(stderr.text).toMatch(/^shop\/staging#4 running \(deploy\) \S+\n$/);
    expect(stderr.text).not.toContain("\r");
  });

  it("prints newline-delimited JSON events with --json", async () => {
    const { url } = await serve((_request, response) => {
      openStream(response);
      sse(response, "status", { deploy: running });
      sse(response, "log", { offset: 0, text: "hello" }, 5);
      sse(response, "end", { deploy: succeeded });
      response.end();
    });
    const stdout = new Capture();
    await followDeploy({
      client: new ApiClient({ server: url, token: "t" }),
      deployId: 17,
      stdout,
      stderr: new Capture(),
      json: true,
    });
    const events = stdout.text
      .trimEnd()
      .split("\n")
      .map((line) => JSON.parse(line));
    expect(events.map((e) => e.event)).toEqual(["status", "log", "end"]);
    expect(events[1]).toEqual({ event: "log", offset: 0, text: "hello" });
    expect(events[2].deploy.status).toBe("succeeded");
  });

  it("falls back to polling when the server answers with JSON pages", async () => {
    const { url } = await serve((request, response) => {
      response.writeHead(200, { "content-type": "application/json" });
      if (request.url?.startsWith("/api/v1/deploys/17/log?offset=0")) {
        response.end(
          JSON.stringify({
            chunks: [{ offset: 0, text: "a\n" }],
            nextOffset: 2,
            complete: false,
            status: "running",
          }),
        );
      } else if (request.url?.startsWith("/api/v1/deploys/17/log?offset=2")) {
        response.end(
          JSON.stringify({
            chunks: [{ offset: 2, text: "b" }],
            nextOffset: 3,
            complete: true,
            status: "failed",
          }),
        );
      } else {
        response.end(
          JSON.stringify({ deploy: deployFixture({ status: "failed", errorCode: "command_failed" }) }),
        );
      }
    });
    const stdout = new Capture();
    const final = await followDeploy({
      client: new ApiClient({ server: url, token: "t" }),
      deployId: 17,
      stdout,
      stderr: new Capture(),
      json: false,
      pollMs: 10,
    });
    expect(final.status).toBe("failed");
    // The log did not end its line: a newline is added so the outcome starts a line of its own.
    expect(stdout.text).toBe("a\nb\n");
  });

  it("does not retry a refused request", async () => {
    const { url, requests } = await serve((_request, response) => {
      response.writeHead(404, { "content-type": "application/json" });
      response.end(JSON.stringify({ error: { code: "E_NOT_FOUND", message: "deploy 17 not found" } }));
    });
    const follow = followDeploy({
      client: new ApiClient({ server: url, token: "t" }),
      deployId: 17,
      stdout: new Capture(),
      stderr: new Capture(),
      json: false,
    });
    await expect(follow).rejects.toThrow(ApiError);
    await expect(follow).rejects.toMatchObject({ code: "E_NOT_FOUND" });
    expect(requests).toHaveLength(1);
  });

  it("gives up when the server stays away", async () => {
    const { url } = await serve((_request, response) => response.socket?.destroy());
    await new Promise((resolve) => server!.close(resolve));
    const started = Date.now();
    await expect(
      followDeploy({
        client: new ApiClient({ server: url, token: "t" }),
        deployId: 17,
        stdout: new Capture(),
        stderr: new Capture(),
        json: false,
        giveUpAfterMs: 600,
      }),
    ).rejects.toThrow(ConnectionError);
    expect(Date.now() - started).toBeGreaterThanOrEqual(600);
  });
});
