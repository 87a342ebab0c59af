import { mkdtemp, rm } from "node:fs/promises";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { WebSocketServer } from "ws";
import { CLOSE, PROTOCOL_VERSION } from "../../src/agent/protocol.js";
import { until } from "../helpers/wait.js";
import { scriptedServerAgent } from "./agent-helpers.js";

/**
 * The agent's side of protocol negotiation, against a scripted server on a
 * real WebSocket: what its hello says, and what it prints (and how soon it
 * tries again) when the server does not speak its protocol.
 */
describe("agent protocol negotiation", () => {
  let server: WebSocketServer | undefined;
  let root: string;
  afterEach(async () => {
    await new Promise((resolve) => (server ? server.close(resolve) : resolve(undefined)));
    await rm(root, { recursive: true, force: true });
  });

  it("says which protocols it speaks, prints the server's refusal and backs off to the longest delay", async () => {
    root = await mkdtemp(path.join(tmpdir(), "turnout-agent-proto-"));
    const hellos: any[] = [];
    server = new WebSocketServer({ port: 0, host: "127.0.0.1" });
    server.on("connection", (socket) => {
      socket.on("message", (data) => {
        hellos.push(JSON.parse(String(data)));
        socket.close(
          CLOSE.unsupportedProtocol,
          "agent protocol 2 is too old for this server (protocol 3-3): upgrade the agent to turnout 9.0.0",
        );
      });
    });
    await new Promise((resolve) => server!.once("listening", resolve));
    const port = (server.address() as AddressInfo).port;
    const lines: string[] = [];
    const stop = new AbortController();
    const running = scriptedServerAgent(port, root, {
      print: (line) => lines.push(line),
      backoff: { minMs: 10, maxMs: 60_000 },
    }).run(stop.signal);
    await until(() => lines.some((l) => l.includes("reconnecting")), 10_000, "the refusal printed");
    stop.abort();
    await running;

    expect(hellos).toHaveLength(1);
    expect(hellos[0]).toMatchObject({
      type: "hello",
      protocol: PROTOCOL_VERSION,
      minProtocol: 1,
      manifests: [],
    });
    const refusal = lines.find((l) => l.includes("reconnecting"))!;
    expect(refusal).toMatch(
      /^agent web-1: the server does not speak this agent's protocol: agent protocol 2 is too old .*upgrade the agent to turnout 9\.0\.0; reconnecting in 60\.0 s$/,
    );
  });
});
