import { readlinkSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { type WebSocket, WebSocketServer } from "ws";
import { type ArtifactManifest, manifestDigest } from "../../src/domain/artifact.js";
import { until } from "../helpers/wait.js";
import { scriptedServerAgent } from "./agent-helpers.js";

/**
 * The agent's side of `activate` (protocol 4) and of its reports after an
 * operation, against a scripted server on a real WebSocket and a real host
 * layout in a temp dir: which messages the agent sends, in which order.
 */
/** Release ids on a host are 16 hex digits (host-layout/layout.ts). */
const R1 = "0123456789abcdef";

describe("agent activate and inventory reports", () => {
  let server: WebSocketServer | undefined;
  let root: string;
  let stop = new AbortController();
  afterEach(async () => {
    stop.abort();
    await new Promise((resolve) => (server ? server.close(resolve) : resolve(undefined)));
    await rm(root, { recursive: true, force: true });
  });

  /** A scripted server that welcomes the agent with `protocol`, and `call` that waits for the answer. */
  async function connected(protocol: number) {
    root = await mkdtemp(path.join(tmpdir(), "turnout-agent-activate-"));
    stop = new AbortController();
    const received: any[] = [];
    let socket: WebSocket | undefined;
    server = new WebSocketServer({ port: 0, host: "127.0.0.1" });
    server.on("connection", (s) => {
      socket = s;
      s.on("message", (data) => {
        const message = JSON.parse(String(data));
        received.push(message);
        if (message.type === "hello") s.send(JSON.stringify({ type: "welcome", hostId: 1, protocol }));
      });
    });
    await new Promise((resolve) => server!.once("listening", resolve));
    const port = (server.address() as AddressInfo).port;
    // No periodic beat during the test: every heartbeat seen is a report after an operation.
    const running = scriptedServerAgent(port, root, { heartbeatMs: 600_000 }).run(stop.signal);

    let nextId = 1;
    const call = async (op: string, args: unknown) => {
      const id = nextId++;
      const from = received.length;
      socket!.send(JSON.stringify({ type: "call", id, op, args }));
      await until(() => received.some((m) => m.type === "result" && m.id === id), 10_000, `${op} answered`);
      return { id, from };
    };
    await until(() => socket !== undefined && received.some((m) => m.type === "hello"), 10_000, "hello");
    // Calls are taken once the welcome is in.
    await new Promise((resolve) => setTimeout(resolve, 50));
    return { received, call, running };
  }

  // A release without blobs: a directory and a link; named by its digest, so that the host keeps its manifest.
  const manifest: ArtifactManifest = {
    version: 1,
    entries: [
      { path: "bin", type: "dir", mode: 0o755 },
      { path: "link", type: "symlink", target: "bin" },
    ],
  };
  const stageArgs = {
    spec: {
      app: "shop",
      releaseId: R1,
      artifact: manifestDigest(manifest),
      manifest,
      shared: [],
      env: {},
      timeoutMs: 10_000,
    },
  };

  it("switches, says so, restarts and checks in one call; says what changed on the host in the result", async () => {
    const { received, call, running } = await connected(4);
    const stage = await call("stage", stageArgs);
    // What the host holds changed: said in the result, with the manifest it now keeps; no heartbeat after it.
    const staged = received.find((m) => m.type === "result" && m.id === stage.id);
    expect(staged.inventory).toEqual([{ app: "shop", releases: [R1], current: null, slots: {} }]);
    expect(staged.manifests).toEqual([manifestDigest(manifest)]);
    expect(received.slice(stage.from).filter((m) => m.type === "heartbeat")).toEqual([]);

    // A prune that removes nothing changes nothing: no report follows it.
    const prune = await call("prune", { app: "shop", keep: 5 });
    expect(received.find((m) => m.id === prune.id && m.type === "result")).toMatchObject({
      ok: true,
      result: { removed: [] },
    });
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(received.slice(prune.from).filter((m) => m.type === "heartbeat")).toEqual([]);

    const activate = await call("activate", {
      app: "shop",
      releaseId: R1,
      slot: "current",
      restart: { argv: ["sh", "-c", "echo restarted"], env: {}, timeoutMs: 10_000 },
      health: { command: ["true"], retries: 0, intervalMs: 0, timeoutMs: 5000 },
    });
    const ofCall = received.slice(activate.from).filter((m) => m.id === activate.id);
    // The switch is reported before the restart's output and before the result.
    expect(ofCall.map((m) => m.type)).toEqual(["switched", "log", "result"]);
    expect(ofCall[0]).toEqual({ type: "switched", id: activate.id, previous: null });
    expect(ofCall[1].line).toBe("restarted");
    expect(ofCall[2]).toEqual({
      type: "result",
      id: activate.id,
      ok: true,
      result: { previous: null },
      inventory: [{ app: "shop", releases: [R1], current: R1, slots: {} }],
    });
    expect(readlinkSync(path.join(root, "shop", "current"))).toContain(R1);

    // A restart that fails: the switch happened, the result says why the host does not serve it.
    const failing = await call("activate", {
      app: "shop",
      releaseId: R1,
      slot: "current",
      restart: { argv: ["sh", "-c", "exit 3"], env: {}, timeoutMs: 10_000 },
      health: { command: ["true"], retries: 0, intervalMs: 0, timeoutMs: 5000 },
    });
    const failed = received.slice(failing.from).filter((m) => m.id === failing.id);
    expect(failed.map((m) => m.type)).toEqual(["switched", "result"]);
    expect(failed[1].result).toEqual({ previous: R1, failure: "restart exited with status 3" });
    // Nothing changed on the host: nothing said.
    expect(failed[1].inventory).toBeUndefined();
    expect(received.slice(activate.from).filter((m) => m.type === "heartbeat")).toEqual([]);

    // Arguments an older call would refuse are refused here too, before anything runs.
    const bad = await call("activate", { app: "shop", releaseId: "../" + R1, slot: "current" });
    const refused = received.slice(bad.from).filter((m) => m.id === bad.id);
    expect(refused.map((m) => m.type)).toEqual(["result"]);
    expect(refused[0]).toMatchObject({ ok: false, error: { code: "E_VALIDATION" } });

    stop.abort();
    await running;
  });

  it("reports what changed in a heartbeat after the result to a server of protocol 3", async () => {
    const { received, call, running } = await connected(3);
    const stage = await call("stage", stageArgs);
    const staged = received.find((m) => m.type === "result" && m.id === stage.id);
    // A server of protocol 3 refuses keys it does not know in a result.
    expect(Object.keys(staged).sort()).toEqual(["id", "ok", "result", "type"]);
    await until(
      () =>
        received
          .slice(stage.from)
          .some((m) => m.type === "heartbeat" && m.inventory?.[0]?.releases?.[0] === R1),
      10_000,
      "the report after staging",
    );
    stop.abort();
    await running;
  });
});
