import { afterEach, describe, expect, it, vi } from "vitest";
import type { WebSocket } from "ws";
import { AgentConnection } from "../../src/providers/fleet/agent-connection.js";
import { AgentHostOps } from "../../src/providers/fleet/agent-host-ops.js";
import { until } from "../helpers/wait.js";

/** A socket that keeps what is sent on it, as an open ws WebSocket would take it. */
function recordingSocket() {
  const frames: { data: string; binary: boolean | undefined }[] = [];
  const socket = {
    OPEN: 1,
    readyState: 1,
    send(data: Buffer | string, options?: { binary?: boolean }) {
      frames.push({ data: String(data), binary: options?.binary });
    },
  };
  return { socket: socket as unknown as WebSocket, frames };
}

const manifest = {
  version: 1,
  entries: Array.from({ length: 50 }, (_, i) => ({
    path: `dir/file-${i}.txt`,
    type: "file",
    mode: 0o644,
    size: i,
    sha256: "a".repeat(64),
  })),
};

describe("AgentConnection calls", () => {
  afterEach(() => vi.restoreAllMocks());

  it("sends a call as a text frame that parses to {type, id, op, args}", async () => {
    const { socket, frames } = recordingSocket();
    const connection = new AgentConnection(1, "web-1", "test", socket);
    const args = { app: "shop", keep: 3 };
    const answer = connection.call("prune", args, { timeoutMs: 5000, cancelGraceMs: 100 });
    expect(frames).toHaveLength(1);
    expect(frames[0]!.binary).toBe(false);
    const sent = JSON.parse(frames[0]!.data);
    expect(Object.keys(sent)).toEqual(["type", "id", "op", "args"]);
    expect(sent).toEqual({ type: "call", id: 1, op: "prune", args });
    connection.receive({ type: "result", id: sent.id, ok: true, result: { removed: [] } });
    await expect(answer).resolves.toEqual({ removed: [] });
  });

  it("serialises one arguments object once, however many hosts it goes to", async () => {
    const stringify = vi.spyOn(JSON, "stringify");
    const args = { spec: { app: "shop", releaseId: "r1", manifest, shared: [], env: {}, timeoutMs: 1000 } };
    const hosts = Array.from({ length: 5 }, (_, i) => {
      const { socket, frames } = recordingSocket();
      return { connection: new AgentConnection(i + 1, `web-${i + 1}`, "test", socket), frames };
    });
    const answers = hosts.map(({ connection }) =>
      connection.call("stage", args as never, { timeoutMs: 5000, cancelGraceMs: 100 }),
    );
    // The manifest went through JSON.stringify once, not once per host.
    const calls = stringify.mock.calls.map(([value]) => value);
    stringify.mockRestore();
    const withManifest = calls.filter((value) => JSON.stringify(value)?.includes("file-49"));
    expect(withManifest.length).toBeLessThanOrEqual(1);
    for (const { connection, frames } of hosts) {
      const sent = JSON.parse(frames[0]!.data);
      expect(sent).toEqual({ type: "call", id: 1, op: "stage", args });
      connection.receive({
        type: "result",
        id: 1,
        ok: true,
        result: { staged: true, blobsFetched: 0, bytesFetched: 0 },
      });
    }
    await Promise.all(answers);
  });
});

describe("an activation over an agent connection", () => {
  const spec = {
    app: "shop",
    releaseId: "r2",
    slot: "current",
    restart: { argv: ["systemctl", "restart", "shop"], env: {}, timeoutMs: 5000 },
    health: { command: ["check"], retries: 0, intervalMs: 0, timeoutMs: 1000 },
  };
  const timing = { callTimeoutMs: 5000, callMarginMs: 1000, cancelGraceMs: 100 };

  it("is one `activate` call to an agent of protocol 4, told switched before the result", async () => {
    const { socket, frames } = recordingSocket();
    const connection = new AgentConnection(1, "web-1", "test", socket, 4);
    const ops = new AgentHostOps("web-1", () => connection, timing);
    const told: (string | null)[] = [];
    const lines: string[] = [];
    const answer = ops.activate(
      spec,
      (line) => lines.push(line),
      new AbortController().signal,
      (previous) => told.push(previous),
    );
    expect(frames).toHaveLength(1);
    const sent = JSON.parse(frames[0]!.data);
    expect(sent).toEqual({ type: "call", id: 1, op: "activate", args: spec });
    connection.receive({ type: "switched", id: 1, previous: "r1" });
    expect(told).toEqual(["r1"]);
    connection.receive({ type: "log", id: 1, line: "restarted" });
    // A second report of the same call is not told twice.
    connection.receive({ type: "switched", id: 1, previous: "r1" });
    connection.receive({ type: "result", id: 1, ok: true, result: { previous: "r1" } });
    await expect(answer).resolves.toEqual({ previous: "r1" });
    expect(told).toEqual(["r1"]);
    expect(lines).toEqual(["restarted"]);
  });

  it("is the three calls, one after the other, to an agent of protocol 3", async () => {
    const { socket, frames } = recordingSocket();
    const connection = new AgentConnection(1, "web-1", "test", socket, 3);
    const ops = new AgentHostOps("web-1", () => connection, timing);
    const told: (string | null)[] = [];
    const answer = ops.activate(
      spec,
      () => undefined,
      new AbortController().signal,
      (previous) => told.push(previous),
    );
    const answerNext = async (op: string, result: unknown) => {
      await until(() => frames.length > 0 && JSON.parse(frames.at(-1)!.data).op === op, 5000, op);
      const sent = JSON.parse(frames.at(-1)!.data);
      connection.receive({ type: "result", id: sent.id, ok: true, result });
      return sent;
    };
    expect((await answerNext("switchTo", { previous: "r1" })).args).toEqual({
      app: "shop",
      releaseId: "r2",
      slot: "current",
    });
    expect((await answerNext("run", { exitCode: 0 })).args.argv).toEqual(["systemctl", "restart", "shop"]);
    expect((await answerNext("health", { healthy: false })).args.check).toEqual(spec.health);
    await expect(answer).resolves.toEqual({ previous: "r1", failure: "health check failed" });
    expect(told).toEqual(["r1"]);
    expect(frames.map((f) => JSON.parse(f.data).op)).toEqual(["switchTo", "run", "health"]);
  });
});
