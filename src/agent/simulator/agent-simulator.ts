import { setMaxListeners } from "node:events";
import { assertName } from "../../domain/names.js";
import { VERSION } from "../../server/version.js";
import { Agent } from "../agent.js";
import { assertLabels } from "../agent-labels.js";
import { SimHostOps, type SimHostOptions } from "./sim-host-ops.js";

/**
 * Many agents in one process, for the control-plane benchmark
 * (docs/benchmarks.md, "Control plane at scale"): each simulated host is the
 * real `Agent` (agent.ts: the same connection loop, hello, heartbeats,
 * calls, reconnects and HTTP blob downloads as `turnout agent`) driving an
 * in-memory host (SimHostOps) instead of a root on disk. So one machine can
 * stand in for a thousand hosts, and whatever the server sees is what real
 * agents send.
 *
 * The hosts have no disk: each one's root is a path under /dev/null, where
 * nothing can be read or created, so the host token the server issues on
 * enrollment is kept in memory only (the agent says it could not save it;
 * that line is expected and not passed on).
 */
export interface AgentSimulatorOptions extends SimHostOptions {
  /** Servers (http://host:port); host i connects to servers[i % length], as a load balancer would spread them. */
  servers: string[];
  /** An enrollment token (role agent) granting the hosts their app and labels. */
  token: string;
  count: number;
  /** Host names are `<prefix>-<n>`, zero-padded (default "sim"). */
  prefix?: string;
  labels?: Record<string, string>;
  /** The agent's heartbeat interval (default the agent's, 5 s). */
  heartbeatMs?: number;
  /** New connections per second while starting (default 500): a fleet coming up, not one stampede. */
  connectPerSecond?: number;
  /** Lines worth a look (refusals, disconnections); routine connection lines are counted, not printed. */
  print?: (line: string) => void;
}

export interface SimulatedHost {
  name: string;
  server: string;
  ops: SimHostOps;
  /** Welcomed by its server and not disconnected since. */
  connected: boolean;
  /** How many times it was welcomed (more than once: it reconnected). */
  welcomes: number;
}

export class AgentSimulator {
  readonly hosts: SimulatedHost[];
  private readonly stopping = new AbortController();
  private readonly runs: Promise<void>[] = [];
  private started = false;

  constructor(private readonly options: AgentSimulatorOptions) {
    // Every host's agent listens on the one stop signal.
    setMaxListeners(0, this.stopping.signal);
    if (options.servers.length === 0) throw new Error("the simulator needs at least one server");
    if (!Number.isInteger(options.count) || options.count < 1)
      throw new Error("count must be a positive integer");
    const prefix = options.prefix ?? "sim";
    const width = String(options.count).length;
    this.hosts = Array.from({ length: options.count }, (_, i) => {
      const name = assertName("host", `${prefix}-${String(i + 1).padStart(width, "0")}`);
      return {
        name,
        server: options.servers[i % options.servers.length]!,
        ops: new SimHostOps(name, options),
        connected: false,
        welcomes: 0,
      };
    });
  }

  /** Starts every host's agent, paced; resolves once all are started (not yet all connected: see waitConnected). */
  async start(): Promise<void> {
    if (this.started) throw new Error("the simulator is already started");
    this.started = true;
    const labels = assertLabels(this.options.labels ?? {});
    const perTick = Math.max(1, Math.round((this.options.connectPerSecond ?? 500) / 20));
    for (const [index, host] of this.hosts.entries()) {
      if (this.stopping.signal.aborted) return;
      if (index > 0 && index % perTick === 0) await sleep(50);
      const agent = new Agent({
        server: host.server,
        enrollmentToken: this.options.token,
        name: host.name,
        labels,
        root: `/dev/null/turnout-sim/${host.name}`,
        version: `${VERSION}+sim`,
        ops: host.ops,
        print: (line) => this.heard(host, line),
        ...(this.options.heartbeatMs ? { heartbeatMs: this.options.heartbeatMs } : {}),
      });
      this.runs.push(agent.run(this.stopping.signal));
    }
  }

  connectedCount(): number {
    return this.hosts.reduce((n, h) => n + (h.connected ? 1 : 0), 0);
  }

  /** Resolves when every host is connected; rejects after `timeoutMs` saying how many are. */
  async waitConnected(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.connectedCount() < this.hosts.length) {
      if (Date.now() > deadline) {
        throw new Error(`only ${this.connectedCount()} of ${this.hosts.length} simulated hosts connected`);
      }
      await sleep(50);
    }
  }

  /** Closes every connection cleanly and waits for every agent loop to end. */
  async stop(): Promise<void> {
    this.stopping.abort();
    await Promise.all(this.runs);
  }

  /** The agent's own lines tell its connection state; the routine ones stay quiet. */
  private heard(host: SimulatedHost, line: string): void {
    if (line.includes(": connected to ")) {
      host.connected = true;
      host.welcomes++;
      return;
    }
    if (line.includes("could not save the host token")) return;
    if (line.endsWith(": stopped")) {
      host.connected = false;
      return;
    }
    if (line.includes("reconnecting in") || line.includes("enrolling again")) host.connected = false;
    this.options.print?.(line);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
