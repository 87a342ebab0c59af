import type { WebSocket } from "ws";
import {
  type AgentMessage,
  type CallArgs,
  type CallResult,
  callDeployPath,
  callResults,
  closeReason,
  DEPLOY_PATH_PROTOCOL,
  type HostOp,
  type ServerMessage,
} from "../../agent/protocol.js";
import { ERROR_CODES, type ErrorCode, TurnoutError } from "../../domain/errors.js";
import type { HostAppInventory } from "../../domain/fleet.js";
import { VERSION } from "../../server/version.js";
import type { HostLog } from "./host-ops.js";

interface Pending {
  op: HostOp;
  log: HostLog | undefined;
  /** An `activate` call's `switched` message, told once. */
  switched: ((previous: string | null) => void) | undefined;
  resolve(value: unknown): void;
  reject(error: Error): void;
}

export interface CallOptions {
  log?: HostLog | undefined;
  signal?: AbortSignal | undefined;
  timeoutMs: number;
  /** After a cancel, how long the agent gets to answer before the call gives up on it. */
  cancelGraceMs: number;
  /** `activate` (protocol 4): told once the agent says the slot is switched, before the call's result. */
  onSwitched?: ((previous: string | null) => void) | undefined;
}

/**
 * One live agent connection after its hello: calls multiplexed over the
 * socket by id, answered by `result` messages, with `log` lines routed to the
 * caller. When the socket goes, every call still waiting fails with
 * E_UNAVAILABLE, so an orchestrator never waits on a host that is gone.
 */
export class AgentConnection {
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private closedError: TurnoutError | undefined;
  lastMessageAt = Date.now();
  /** When last_seen_at was last written to the store. */
  lastPersistedAt = 0;
  /**
   * Each app's inventory record as last written to the store (JSON), so a
   * report writes only what changed; undefined when unknown (a write failed).
   */
  savedInventory: Map<string, string> | undefined = new Map<string, string>();

  /** What the host last reported holding (hello, then heartbeats that changed it). */
  inventory: HostAppInventory[] = [];
  /** Protocol 2: artifact digests whose manifests the agent keeps, most recent first. */
  manifests: string[] = [];
  /** Artifacts of the stage calls waiting for this host's answer, with how many calls name each. */
  private readonly staging = new Map<string, number>();
  /**
   * The hash of the host token this connection was made with (or issued at
   * its enrollment), and the host's grant of apps then: what a download with
   * that token is, without a look-up, while this server waits for the host
   * to stage (see AgentHub.stagingHost).
   */
  tokenHash: string | undefined;
  grantApps: string[] | null = [];

  constructor(
    readonly hostId: number,
    readonly name: string,
    readonly version: string,
    private readonly socket: WebSocket,
    /** The protocol negotiated at hello (agent-hub.ts negotiateProtocol). */
    readonly protocol = 1,
  ) {}

  get closed(): boolean {
    return this.closedError !== undefined;
  }

  send(message: ServerMessage): void {
    if (this.closed || this.socket.readyState !== this.socket.OPEN) return;
    this.socket.send(JSON.stringify(message));
  }

  close(code: number, reason: string): void {
    this.socket.close(code, closeReason(reason));
    // A peer that does not answer the close handshake is dropped anyway.
    setTimeout(() => this.socket.terminate(), 2000).unref();
  }

  terminate(): void {
    this.socket.terminate();
  }

  async call<Op extends HostOp>(op: Op, args: CallArgs<Op>, options: CallOptions): Promise<CallResult<Op>> {
    if (this.closedError) throw this.closedError;
    // An older agent would drop the path and work on <root>/<app>: refused here, before anything is sent.
    // (Here rather than in AgentHostOps: calls routed from another server arrive here too.)
    const path = callDeployPath(op, args);
    if (path !== undefined && this.protocol < DEPLOY_PATH_PROTOCOL) {
      throw new TurnoutError(
        "E_PROVIDER_UNSUPPORTED",
        `host ${this.name}: its agent (turnout ${this.version}, protocol ${this.protocol}) cannot place releases at a deploy path (${path}); upgrade the agent to turnout ${VERSION} (protocol ${DEPLOY_PATH_PROTOCOL})`,
        { host: this.name, op, path, protocol: this.protocol },
      );
    }
    const { signal } = options;
    if (signal?.aborted) throw abortError(this.name, op);
    const id = this.nextId++;
    const staged = op === "stage" ? (args as CallArgs<"stage">).spec.artifact : undefined;
    if (staged !== undefined) this.staging.set(staged, (this.staging.get(staged) ?? 0) + 1);
    return new Promise<CallResult<Op>>((resolve, reject) => {
      let graceTimer: NodeJS.Timeout | undefined;
      let finished = false;
      const finish = () => {
        if (!finished && staged !== undefined) {
          const left = (this.staging.get(staged) ?? 1) - 1;
          if (left > 0) this.staging.set(staged, left);
          else this.staging.delete(staged);
        }
        finished = true;
        clearTimeout(timer);
        clearTimeout(graceTimer);
        signal?.removeEventListener("abort", onAbort);
        this.pending.delete(id);
      };
      const timer = setTimeout(() => {
        this.send({ type: "cancel", id });
        finish();
        reject(
          new TurnoutError(
            "E_UNAVAILABLE",
            `host ${this.name}: ${op} timed out after ${options.timeoutMs} ms`,
            {
              host: this.name,
              op,
            },
          ),
        );
      }, options.timeoutMs);
      // The host is told to stop; its own answer (usually its abort error) settles the call.
      const onAbort = () => {
        this.send({ type: "cancel", id });
        graceTimer = setTimeout(() => {
          finish();
          reject(abortError(this.name, op));
        }, options.cancelGraceMs);
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      let toldSwitched = false;
      this.pending.set(id, {
        op,
        log: options.log,
        switched: options.onSwitched
          ? (previous) => {
              if (toldSwitched) return;
              toldSwitched = true;
              options.onSwitched?.(previous);
            }
          : undefined,
        resolve: (value) => {
          finish();
          resolve(value as CallResult<Op>);
        },
        reject: (error) => {
          finish();
          reject(error);
        },
      });
      this.sendCall(id, op, args);
    });
  }

  /** `{type: "call", id, op, args}`, with the arguments' JSON made once per arguments object (see argsJson). */
  private sendCall(id: number, op: HostOp, args: object): void {
    if (this.closed || this.socket.readyState !== this.socket.OPEN) return;
    const head = Buffer.from(`{"type":"call","id":${id},"op":${JSON.stringify(op)},"args":`);
    this.socket.send(Buffer.concat([head, argsJson(args), CLOSING_BRACE]), { binary: false });
  }

  /** A result, log line or switch report from the agent. Unknown ids are late answers to calls given up on. */
  receive(message: Extract<AgentMessage, { type: "result" | "log" | "switched" }>): void {
    const pending = this.pending.get(message.id);
    if (!pending) return;
    if (message.type === "log") {
      pending.log?.(message.line, message.partial === true);
      return;
    }
    if (message.type === "switched") {
      pending.switched?.(message.previous);
      return;
    }
    if (!message.ok) {
      pending.reject(
        new TurnoutError(errorCode(message.error.code), `host ${this.name}: ${message.error.message}`),
      );
      return;
    }
    const parsed = callResults[pending.op].safeParse(message.result);
    if (!parsed.success) {
      pending.reject(
        new TurnoutError("E_INTERNAL", `host ${this.name}: malformed ${pending.op} result from the agent`),
      );
      return;
    }
    pending.resolve(parsed.data);
  }

  /** The socket is gone: every waiting call fails. */
  closedWith(reason: string): void {
    if (this.closedError) return;
    this.closedError = new TurnoutError(
      "E_UNAVAILABLE",
      `host ${this.name} disconnected${reason ? `: ${reason}` : ""}`,
      {
        host: this.name,
      },
    );
    for (const pending of [...this.pending.values()]) pending.reject(this.closedError);
    this.pending.clear();
  }

  /**
   * Whether this server has asked this host, on this connection, to stage
   * `artifact` and is waiting for its answer: the host then downloads that
   * artifact's blobs (read-access.ts). The record that the artifact was sent
   * (host_artifacts) was written before the call (FleetStore.sendArtifact),
   * so this answers what the store would, without a statement per download.
   */
  isStaging(artifact: string): boolean {
    return this.staging.has(artifact);
  }

  /** Whether a stage call on this connection waits for the host's answer. */
  get stagingAnything(): boolean {
    return this.staging.size > 0;
  }

  get callsInFlight(): number {
    return this.pending.size;
  }
}

/**
 * Call arguments as JSON bytes, serialised once per arguments object: the
 * orchestrator hands one stage spec (the whole manifest, hundreds of KB for
 * a large release) to every host of a fleet, and serialising and encoding it
 * per host was most of the server's CPU for a one-file release. The cache is
 * keyed weakly, so it lives exactly as long as the arguments do; arguments
 * are never changed once sent (callers build a fresh object per call, or
 * one per deploy for a stage).
 */
const serializedArgs = new WeakMap<object, Buffer>();
const CLOSING_BRACE = Buffer.from("}");

function argsJson(args: object): Buffer {
  let json = serializedArgs.get(args);
  if (json === undefined) {
    json = Buffer.from(JSON.stringify(args));
    serializedArgs.set(args, json);
  }
  return json;
}

function errorCode(code: string): ErrorCode {
  return (ERROR_CODES as readonly string[]).includes(code) ? (code as ErrorCode) : "E_INTERNAL";
}

function abortError(host: string, op: string): TurnoutError {
  return new TurnoutError("E_UNAVAILABLE", `host ${host}: ${op} cancelled`, { host, op, cancelled: true });
}
