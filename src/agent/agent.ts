import type { IncomingMessage } from "node:http";
import path from "node:path";
import { type RawData, WebSocket } from "ws";
import type { HostAppInventory } from "../domain/fleet.js";
import type { HostOps } from "../providers/fleet/host-ops.js";
import { HttpBlobSource } from "./agent-blobs.js";
import { errorBody, executeCall, MUTATING_OPS, type StageManifests } from "./agent-calls.js";
import { type Backoff, backoffDelay, DEFAULT_BACKOFF, readHostToken, saveHostToken } from "./agent-state.js";
import { pieceEnd } from "./host-layout/commands.js";
import { KeptManifests } from "./kept-manifests.js";
import {
  AGENT_CONNECT_PATH,
  type AgentMessage,
  CLOSE,
  type HostOp,
  MAX_LOG_LINE,
  PROTOCOL_VERSION,
  parseMessage,
  REPORT_IN_RESULT_PROTOCOL,
  type ServerMessage,
  serverMessageSchema,
} from "./protocol.js";

export interface AgentOptions {
  /** http(s)://host:port, no trailing slash. */
  server: string;
  /** The enrollment token from the command line (may be absent once a host token is saved). */
  enrollmentToken: string | undefined;
  name: string;
  labels: Record<string, string>;
  /** The release root; the host token lives in <root>/.turnout/. */
  root: string;
  version: string;
  ops: HostOps;
  print: (line: string) => void;
  heartbeatMs?: number;
  /** No message from the server for this long (it pings every few seconds): reconnect. */
  serverSilenceMs?: number;
  backoff?: Backoff;
  /** The newest protocol to speak (default PROTOCOL_VERSION): lower only to act as an older agent. */
  protocol?: number;
}

/** Why a session ended, and what the loop should do about it. */
interface SessionEnd {
  welcomed: boolean;
  /** One line for the operator. */
  reason: string;
  /** The server refused the host token: try the enrollment token next, at once. */
  hostTokenRefused?: boolean;
  /** Another live agent took this host name: wait the longest before competing again. */
  replaced?: boolean;
  /** The server does not speak this agent's protocol: only an upgrade helps, so retry slowly. */
  unsupported?: boolean;
}

const HANDSHAKE_TIMEOUT_MS = 10_000;
const WELCOME_TIMEOUT_MS = 15_000;
/** The server sends stage manifests, which can be large for big trees. */
const MAX_SERVER_MESSAGE = 256 * 1024 * 1024;

/**
 * `turnout agent`: connects out to the server over a WebSocket (it never
 * listens), says hello with its labels and what it holds, sends heartbeats,
 * and runs the server's calls on the local host layout. When the connection
 * drops it reconnects with exponential backoff and jitter, reset after every
 * successful hello.
 */
export class Agent {
  private readonly heartbeatMs: number;
  private readonly serverSilenceMs: number;
  private readonly backoff: Backoff;
  private hostToken: string | undefined;
  private useHostToken = true;
  private readonly blobs: HttpBlobSource;
  private readonly manifests: StageManifests;

  constructor(private readonly options: AgentOptions) {
    this.heartbeatMs = options.heartbeatMs ?? 5_000;
    this.serverSilenceMs = options.serverSilenceMs ?? Math.max(20_000, 4 * this.heartbeatMs);
    this.backoff = options.backoff ?? DEFAULT_BACKOFF;
    this.hostToken = readHostToken(options.root);
    // The host token only: an enrollment token reads nothing.
    this.blobs = new HttpBlobSource(options.server, () => (this.hostToken ? [this.hostToken] : []));
    this.manifests = {
      kept: new KeptManifests(path.join(options.root, ".turnout", "manifests")),
      fetch: (digest) => this.blobs.forArtifact(digest).manifest(digest),
    };
  }

  /** Runs until `stop` aborts; then closes the connection cleanly and resolves. */
  async run(stop: AbortSignal): Promise<void> {
    const { print, name } = this.options;
    let attempt = 0;
    while (!stop.aborted) {
      const end = await this.session(stop);
      if (stop.aborted) break;
      if (end.welcomed) attempt = 0;
      if (end.hostTokenRefused && this.options.enrollmentToken) {
        this.useHostToken = false;
        print(`agent ${name}: ${end.reason}; enrolling again with the enrollment token`);
        continue;
      }
      const delay =
        end.replaced || end.unsupported ? this.backoff.maxMs : backoffDelay(attempt++, this.backoff);
      print(`agent ${name}: ${end.reason}; reconnecting in ${(delay / 1000).toFixed(1)} s`);
      await sleep(delay, stop);
    }
    print(`agent ${name}: stopped`);
  }

  private token(): string | undefined {
    if (this.hostToken && (this.useHostToken || !this.options.enrollmentToken)) return this.hostToken;
    return this.options.enrollmentToken;
  }

  /** One connection, from dialing to its end. Never rejects. */
  private session(stop: AbortSignal): Promise<SessionEnd> {
    const { server, name, print } = this.options;
    const token = this.token();
    if (!token) return Promise.resolve({ welcomed: false, reason: "no token to connect with" });
    const usingHostToken = token === this.hostToken;
    const url = `${server.replace(/^http/, "ws")}${AGENT_CONNECT_PATH}`;

    return new Promise<SessionEnd>((resolve) => {
      const socket = new WebSocket(url, {
        headers: { authorization: `Bearer ${token}` },
        handshakeTimeout: HANDSHAKE_TIMEOUT_MS,
        maxPayload: MAX_SERVER_MESSAGE,
        perMessageDeflate: false,
      });
      const calls = new Map<number, AbortController>();
      let welcomed = false;
      /** The protocol the server chose in its welcome (absent: 1). */
      let negotiated = 1;
      let ended = false;
      let refusal: string | undefined;
      let refusedStatus: number | undefined;
      let lastInventory = "";
      let lastManifests = "";
      let lastServerMessage = Date.now();
      let heartbeat: NodeJS.Timeout | undefined;
      let reportSoon = false;

      const finish = (end: SessionEnd) => {
        if (ended) return;
        ended = true;
        clearInterval(heartbeat);
        clearTimeout(welcomeTimer);
        stop.removeEventListener("abort", onStop);
        // A call lives as long as the connection that carried it: the server has already given up on it.
        for (const controller of calls.values()) controller.abort();
        calls.clear();
        resolve(end);
      };
      const send = (message: AgentMessage) => {
        if (socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(message));
      };
      const onStop = () => {
        socket.close(1000, "agent stopping");
        // A server that does not answer the close handshake does not hold the agent up.
        setTimeout(() => socket.terminate(), 2000).unref();
      };
      stop.addEventListener("abort", onStop, { once: true });
      const welcomeTimer = setTimeout(() => socket.terminate(), WELCOME_TIMEOUT_MS);

      const inventory = async (): Promise<HostAppInventory[] | undefined> => {
        try {
          return await this.options.ops.inventory();
        } catch (error) {
          print(`agent ${name}: cannot read the host's releases: ${(error as Error).message}`);
          return undefined;
        }
      };
      /** What the host holds and which manifests it keeps, each only when it changed since last said. */
      const changes = async (): Promise<{ inventory?: HostAppInventory[]; manifests?: string[] }> => {
        const current = await inventory();
        const text = current ? JSON.stringify(current) : lastInventory;
        const changed = current !== undefined && text !== lastInventory;
        if (changed) lastInventory = text;
        // Which manifests the server may send differences against: said when they change.
        const kept = this.manifests.kept.list();
        const keptChanged = kept.join(",") !== lastManifests;
        if (keptChanged) lastManifests = kept.join(",");
        return { ...(changed ? { inventory: current } : {}), ...(keptChanged ? { manifests: kept } : {}) };
      };
      /**
       * `onlyIfChanged`: the report after an operation that changes what the
       * host holds (to a server of protocol 3 or older, which takes no report
       * in a result) goes only when it did change (a prune that removed
       * nothing): the periodic beat says the agent is alive.
       */
      const sendHeartbeat = async (onlyIfChanged = false) => {
        if (Date.now() - lastServerMessage > this.serverSilenceMs) {
          refusal = `no word from the server for ${Math.round((Date.now() - lastServerMessage) / 1000)} s`;
          socket.terminate();
          return;
        }
        const report = await changes();
        if (onlyIfChanged && report.inventory === undefined && report.manifests === undefined) return;
        send({ type: "heartbeat", ...report });
      };

      const runCall = (id: number, op: HostOp, args: unknown) => {
        const controller = new AbortController();
        calls.set(id, controller);
        // A line longer than a message may carry goes in pieces marked partial, never cut short:
        // the server masks secrets on the joined stream, and a cut could leave half a secret.
        const log = (line: string, continued = false) => {
          let rest = line;
          while (rest.length > MAX_LOG_LINE) {
            const cut = pieceEnd(rest, MAX_LOG_LINE);
            send({ type: "log", id, line: rest.slice(0, cut), partial: true });
            rest = rest.slice(cut);
          }
          send(continued ? { type: "log", id, line: rest, partial: true } : { type: "log", id, line: rest });
        };
        let failed = false;
        executeCall(
          this.options.ops,
          (artifact) => this.blobs.forArtifact(artifact),
          op,
          args,
          log,
          controller.signal,
          this.manifests,
          (previous) => send({ type: "switched", id, previous }),
        )
          .then(
            async (result) => {
              // Protocol 4: what the operation changed on the host goes with its result, not in a
              // heartbeat of its own after it (two messages fewer per host and deploy).
              // A report that cannot be made never holds the result back: the next beat says it.
              const report =
                MUTATING_OPS.has(op) && negotiated >= REPORT_IN_RESULT_PROTOCOL
                  ? await changes().catch(() => ({}))
                  : {};
              send({ type: "result", id, ok: true, result, ...report });
            },
            (error: unknown) => {
              failed = true;
              send({ type: "result", id, ok: false, error: errorBody(error) });
            },
          )
          .finally(() => {
            calls.delete(id);
            // What the host holds changed: tell the server now rather than at the next beat.
            // (A failed operation may have changed it too: an activation whose restart was stopped.)
            const reported = negotiated >= REPORT_IN_RESULT_PROTOCOL && !failed;
            if (MUTATING_OPS.has(op) && !reported && !reportSoon) {
              reportSoon = true;
              void sendHeartbeat(true).finally(() => {
                reportSoon = false;
              });
            }
          });
      };

      const onMessage = (message: ServerMessage) => {
        lastServerMessage = Date.now();
        switch (message.type) {
          case "welcome": {
            if (welcomed) return;
            welcomed = true;
            negotiated = message.protocol ?? 1;
            clearTimeout(welcomeTimer);
            if (message.hostToken) {
              // Used from now on even if it cannot be saved: downloads take no other token.
              this.hostToken = message.hostToken;
              try {
                const file = saveHostToken(this.options.root, message.hostToken);
                print(`agent ${name}: enrolled; host token saved to ${file}`);
              } catch (error) {
                print(`agent ${name}: could not save the host token: ${(error as Error).message}`);
              }
            }
            this.useHostToken = true;
            print(
              `agent ${name}: connected to ${server} (host id ${message.hostId}, protocol ${message.protocol ?? 1})`,
            );
            heartbeat = setInterval(() => void sendHeartbeat(), this.heartbeatMs);
            return;
          }
          case "call":
            if (!welcomed || calls.has(message.id)) return;
            runCall(message.id, message.op, message.args);
            return;
          case "cancel":
            calls.get(message.id)?.abort();
            return;
          case "ping":
            return;
        }
      };

      socket.on("unexpected-response", (request, response: IncomingMessage) => {
        refusedStatus = response.statusCode;
        let body = "";
        response.setEncoding("utf8");
        response.on("data", (chunk: string) => {
          if (body.length < 4096) body += chunk;
        });
        response.on("end", () => {
          refusal = `the server refused the connection (HTTP ${response.statusCode}${errorText(body)})`;
          request.destroy();
          socket.terminate();
        });
        response.on("error", () => socket.terminate());
      });
      socket.on("open", () => {
        void inventory().then((current) => {
          lastInventory = JSON.stringify(current ?? []);
          const kept = this.manifests.kept.list();
          lastManifests = kept.join(",");
          send({
            type: "hello",
            protocol: Math.min(this.options.protocol ?? PROTOCOL_VERSION, PROTOCOL_VERSION),
            // Protocol 1 servers would take this agent's calls too, but refuse the hello's new fields.
            minProtocol: 1,
            manifests: kept,
            name,
            labels: this.options.labels,
            version: this.options.version,
            inventory: current ?? [],
          });
        });
      });
      socket.on("message", (data: RawData) => {
        let message: ServerMessage;
        try {
          message = parseMessage(serverMessageSchema, data);
        } catch (error) {
          print(`agent ${name}: ignoring a message from the server: ${(error as Error).message}`);
          return;
        }
        onMessage(message);
      });
      socket.on("error", (error: Error) => {
        refusal ??= `cannot connect to ${server}: ${causeOf(error)}`;
      });
      socket.on("close", (code: number, reason: Buffer) => {
        const text = reason.toString();
        if (refusedStatus !== undefined) {
          finish({
            welcomed,
            reason: refusal ?? `the server refused the connection (HTTP ${refusedStatus})`,
            hostTokenRefused: usingHostToken && refusedStatus === 401,
          });
          return;
        }
        if (code === CLOSE.unsupportedProtocol) {
          finish({
            welcomed,
            reason: `the server does not speak this agent's protocol: ${text}`,
            unsupported: true,
          });
          return;
        }
        if (!welcomed && code === CLOSE.refused) {
          finish({
            welcomed,
            reason: `the server refused this agent: ${text}`,
            hostTokenRefused: usingHostToken,
          });
          return;
        }
        const why = refusal ?? (text ? `${text} (${code})` : `connection closed (${code})`);
        finish({
          welcomed,
          reason: welcomed ? `disconnected: ${why}` : why,
          replaced: code === CLOSE.replaced,
        });
      });
    });
  }
}

function errorText(body: string): string {
  try {
    const parsed = JSON.parse(body) as { error?: { code?: unknown; message?: unknown } };
    if (typeof parsed.error?.message === "string") return `: ${parsed.error.code} ${parsed.error.message}`;
  } catch {
    // not JSON
  }
  return "";
}

function causeOf(error: Error): string {
  const code = (error as NodeJS.ErrnoException).code;
  return code ? `${code} ${error.message}` : error.message;
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) {
      resolve();
      return;
    }
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    }
    signal.addEventListener("abort", done, { once: true });
  });
}
