import { randomUUID } from "node:crypto";
import { type CallArgs, type CallResult, callResults, type HostOp } from "../../agent/protocol.js";
import { ERROR_CODES, type ErrorCode, TurnoutError } from "../../domain/errors.js";
import { CoalescedRunner } from "../../engine/coalesced-runner.js";
import type {
  HostCallMessage,
  HostCallOutcome,
  HostCallRow,
  HostCallStore,
  NewHostCall,
} from "../../store/host-calls.js";
import { WriteBatcher } from "../../store/write-batcher.js";
import {
  ACTIVATE_OP,
  type ActivationArgs,
  type ActivationResult,
  activationProgress,
  activationResult,
  type OnSwitched,
} from "./activation.js";
import type { AgentConnection } from "./agent-connection.js";
import type { AgentCallTiming } from "./agent-host-ops.js";
import { HostCallHolder, safeJson } from "./host-call-holder.js";
import type { HostLog } from "./host-ops.js";
import type { ManifestDiffs } from "./manifest-diffs.js";

export interface HostCallRouterTiming {
  /** How often missed notifications are made up for, dead servers noticed and invalid calls stopped. */
  sweepMs: number;
  /**
   * How often who holds which host is re-read with no announcement
   * (a safety net: agents coming and going are announced, and the map is
   * re-read at once then and whenever the listener reconnects). The read
   * returns every connected agent, a thousand rows with a thousand hosts:
   * once a second on every server it was most of an idle server's
   * statements by volume.
   */
  hostsRefreshMs: number;
  /** How often this server writes its heartbeat and reads the others'. */
  heartbeatMs: number;
  /** A server whose heartbeat is older than this is gone. */
  serverDeadMs: number;
  /** A routed call is started only while its deploy's lease has at least this much left. */
  leaseMarginMs: number;
  /** Output lines are sent to the caller at most this often per call. */
  logFlushMs: number;
  /**
   * How long an outcome waits for others before its statement goes: the
   * calls of a fleet batch end a few milliseconds apart, each in a turn of
   * its own, and were a statement apiece (FleetHostWrites does the same for
   * the caller's records).
   */
  finishLingerMs: number;
}

export const DEFAULT_ROUTER_TIMING: HostCallRouterTiming = {
  sweepMs: 1000,
  hostsRefreshMs: 10_000,
  heartbeatMs: 2000,
  serverDeadMs: 7000,
  leaseMarginMs: 1000,
  logFlushMs: 100,
  finishLingerMs: 3,
};

export interface HostCallRouterOptions {
  store: HostCallStore;
  owner: string;
  /** The agent connection of a host held by this server. */
  local(name: string): AgentConnection | undefined;
  /** Whether a server process is certainly gone by other means (same machine, pid gone: engine/owner.ts). */
  ownerIsDead(owner: string): boolean;
  /** The timeouts of the agent calls an activation makes here (activation.ts). */
  callTiming: AgentCallTiming;
  /** Differences from the manifests this server's agents keep, for the stage calls routed here. */
  diffs?: ManifestDiffs | undefined;
  timing?: Partial<HostCallRouterTiming>;
  report(message: string): void;
}

interface Waiter {
  id: string;
  host: string;
  op: string;
  target: string;
  log: HostLog | undefined;
  /** An activation's progress report (lines of kind PROGRESS). */
  progress: ((text: string) => void) | undefined;
  /** Checks the result the holder recorded. */
  parse(result: unknown): { success: true; data: unknown } | { success: false };
  nextSeq: number;
  /** Line fetches and deliveries, one after the other. */
  lines: Promise<void>;
  settled: boolean;
  resolve(value: unknown): void;
  reject(error: Error): void;
}

/** The `continued` value of a line that is not output but an activation's progress report (activation.ts). */
const PROGRESS = 2;

/**
 * Host operations between servers sharing one PostgreSQL (issue 14). A
 * deploy on this server calls an agent another server holds through a
 * host_calls row and a NOTIFY to that server; the holder executes it on its
 * local AgentConnection, streams output lines back the same way and records
 * the outcome. Each call has its own id and runs at most once (claimed from
 * `pending` under SKIP LOCKED); the holder starts it only while the calling
 * deploy still holds its lease, and stops it when that lease is lost. A
 * caller gives up on a call when the host moves to another server or its
 * holder dies: the orchestrator then retries it where the host now is.
 */
export class HostCallRouter {
  private readonly timing: HostCallRouterTiming;
  private readonly waiting = new Map<string, Waiter>();
  /** Calls to record, together (see queueCreate). */
  private readonly creates = new WriteBatcher<{ call: NewHostCall; waiter: Waiter }>((batch) => {
    // A call given up on before it was recorded (cancelled, timed out) is not recorded at all.
    const calls = batch.filter((b) => !b.waiter.settled).map((b) => b.call);
    if (calls.length === 0) return Promise.resolve();
    this.stats.roundTrips++;
    return this.options.store.createMany(calls);
  });
  /** Agent hosts held by other live servers: host name → server. */
  private remote = new Map<string, string>();
  private servers = new Map<string, number>();
  private sweeper: NodeJS.Timeout | undefined;
  private beater: NodeJS.Timeout | undefined;
  /** One read of who holds what at a time; asks during one share one more after it. */
  private readonly hostRefresh = new CoalescedRunner(
    () => this.readHosts(),
    0,
    (e) => this.options.report(`host calls: reading hosts failed: ${(e as Error).message}`),
  );
  private sweeps = 0;
  private closed = false;
  /** Database round trips made for routed calls, both sides (docs/benchmarks.md). */
  readonly stats = { calls: 0, executed: 0, roundTrips: 0, lineBatches: 0 };
  /** Calls this server runs for others (host-call-holder.ts). */
  private readonly holder: HostCallHolder;

  constructor(private readonly options: HostCallRouterOptions) {
    this.timing = { ...DEFAULT_ROUTER_TIMING, ...options.timing };
    this.holder = new HostCallHolder({
      store: options.store,
      owner: options.owner,
      local: options.local,
      callTiming: options.callTiming,
      diffs: options.diffs,
      timing: this.timing,
      callerIsGone: (owner) => this.callerIsGone(owner),
      stats: this.stats,
      report: options.report,
    });
  }

  async start(): Promise<void> {
    await this.heartbeat();
    this.refreshHosts();
    this.sweeper = setInterval(() => this.sweep(), this.timing.sweepMs);
    this.sweeper.unref();
    this.beater = setInterval(() => {
      this.heartbeat().catch((e: Error) => this.options.report(`host calls: heartbeat failed: ${e.message}`));
    }, this.timing.heartbeatMs);
    this.beater.unref();
  }

  /** The server holding `name`, when it is another live one. */
  holderOf(name: string): string | undefined {
    const owner = this.remote.get(name);
    return owner !== undefined && !this.isDead(owner) ? owner : undefined;
  }

  /** Whether a server process is gone: by pid on this machine, or by its heartbeat anywhere. */
  isDead(owner: string): boolean {
    if (owner === this.options.owner) return false;
    if (this.options.ownerIsDead(owner)) return true;
    const seen = this.servers.get(owner);
    return seen === undefined || Date.now() - seen > this.timing.serverDeadMs;
  }

  /**
   * Whether the server that made a call is gone, for the holder deciding to
   * start or stop it. A caller this server has not heard from yet (started
   * since its last heartbeat read) is not: it has just made the call, and
   * its deploy's lease, checked with the call, says it is alive. Taking it
   * for dead, as isDead does for an unknown target, abandoned every call of
   * a deploy started on a freshly restarted server before the holders' next
   * heartbeat read ("the server that made this call is gone").
   */
  private callerIsGone(owner: string): boolean {
    if (owner === this.options.owner) return false;
    if (this.options.ownerIsDead(owner)) return true;
    const seen = this.servers.get(owner);
    return seen !== undefined && Date.now() - seen > this.timing.serverDeadMs;
  }

  // ---- the caller's side ---------------------------------------------------

  /** Runs `op` on `host` through the server `target` that holds it, for deploy `deployId`. */
  call<Op extends HostOp>(
    target: string,
    deployId: number,
    host: string,
    op: Op,
    args: CallArgs<Op>,
    options: { timeoutMs: number; log?: HostLog | undefined; signal?: AbortSignal | undefined },
  ): Promise<CallResult<Op>> {
    return this.route(target, deployId, host, op, args, {
      ...options,
      parse: (result) => callResults[op].safeParse(result),
      graceMs: this.options.callTiming.cancelGraceMs,
    }) as Promise<CallResult<Op>>;
  }

  /**
   * Switches, restarts and health-checks `host` through the server holding it,
   * in one routed call (activation.ts); `onSwitched` is told when the switch
   * is done. A cancel stops the restart or health check there; the caller
   * still waits for the answer (a switch cannot be stopped half-way), so that
   * it knows whether the host was switched and must be switched back.
   */
  activate(
    target: string,
    deployId: number,
    host: string,
    args: ActivationArgs,
    options: { timeoutMs: number; log: HostLog; signal: AbortSignal; onSwitched: OnSwitched },
  ): Promise<ActivationResult> {
    const timing = this.options.callTiming;
    let told = false;
    return this.route(target, deployId, host, ACTIVATE_OP, args, {
      ...options,
      parse: (result) => activationResult.safeParse(result),
      progress: (text) => {
        const parsed = activationProgress.safeParse(safeJson(text));
        if (told || !parsed.success) return;
        told = true;
        options.onSwitched(parsed.data.previous);
      },
      graceMs: timing.callTimeoutMs + timing.callMarginMs + timing.cancelGraceMs,
    }) as Promise<ActivationResult>;
  }

  private async route(
    target: string,
    deployId: number,
    host: string,
    op: string,
    args: object,
    options: {
      timeoutMs: number;
      log?: HostLog | undefined;
      signal?: AbortSignal | undefined;
      parse: Waiter["parse"];
      progress?: Waiter["progress"];
      /** How long a cancelled call is still waited for (its holder reports how far it got). */
      graceMs: number;
    },
  ): Promise<unknown> {
    const { signal } = options;
    if (signal?.aborted) throw cancelled(host, op);
    if (this.closed) throw new TurnoutError("E_UNAVAILABLE", `host ${host}: this server is shutting down`);
    const id = randomUUID();
    this.stats.calls++;
    let timer: NodeJS.Timeout | undefined;
    let graceTimer: NodeJS.Timeout | undefined;
    const onAbort = () => {
      this.giveUp(waiter);
      graceTimer = setTimeout(() => waiter.reject(cancelled(host, op)), options.graceMs);
    };
    const waiter: Waiter = {
      id,
      host,
      op,
      target,
      log: options.log,
      progress: options.progress,
      parse: options.parse,
      nextSeq: 0,
      lines: Promise.resolve(),
      settled: false,
      resolve: () => undefined,
      reject: () => undefined,
    };
    const result = new Promise<unknown>((resolve, reject) => {
      const finish = () => {
        waiter.settled = true;
        clearTimeout(timer);
        clearTimeout(graceTimer);
        signal?.removeEventListener("abort", onAbort);
        this.waiting.delete(id);
      };
      waiter.resolve = (value) => {
        if (waiter.settled) return;
        finish();
        resolve(value);
      };
      waiter.reject = (error) => {
        if (waiter.settled) return;
        finish();
        reject(error);
      };
    });
    this.waiting.set(id, waiter);
    timer = setTimeout(() => {
      this.giveUp(waiter);
      waiter.reject(
        new TurnoutError("E_UNAVAILABLE", `host ${host}: ${op} timed out after ${options.timeoutMs} ms`, {
          host,
          op,
        }),
      );
    }, options.timeoutMs);
    signal?.addEventListener("abort", onAbort, { once: true });
    this.queueCreate(
      {
        id,
        deployId,
        host,
        caller: this.options.owner,
        target,
        op,
        args: argsText(args),
        timeoutMs: options.timeoutMs,
      },
      waiter,
      (error) =>
        waiter.reject(
          new TurnoutError("E_UNAVAILABLE", `host ${host}: could not route ${op}: ${error.message}`, {
            host,
            op,
          }),
        ),
    );
    return result;
  }

  /**
   * Calls made in the same turn of the event loop (a batch of a fleet
   * deploy: one operation on many hosts), or while the previous group is
   * being recorded, are recorded in one statement (HostCallStore.createMany,
   * WriteBatcher); a failed statement fails each of them.
   */
  private queueCreate(call: NewHostCall, waiter: Waiter, failed: (error: Error) => void): void {
    this.creates.add({ call, waiter }).catch(failed);
  }

  /** Stops waiting: a pending call is never executed, a running one is told to stop. */
  private giveUp(waiter: Waiter): void {
    this.stats.roundTrips++;
    this.options.store
      .cancel(waiter.id, waiter.target)
      .catch((e: Error) => this.options.report(`host calls: cancelling a call failed: ${e.message}`));
  }

  private onLog(waiter: Waiter, message: Extract<HostCallMessage, { k: "log" }>): void {
    waiter.lines = waiter.lines.then(async () => {
      if (message.s + (message.l?.length ?? 0) <= waiter.nextSeq) return;
      if (message.l && message.s === waiter.nextSeq) {
        for (const [line, continued] of message.l) deliver(waiter, line, continued);
        waiter.nextSeq += message.l.length;
        return;
      }
      await this.fetchLines(waiter);
    });
  }

  private async fetchLines(waiter: Waiter): Promise<void> {
    this.stats.roundTrips++;
    const lines = await this.options.store.linesSince(waiter.id, waiter.nextSeq);
    for (const l of lines) {
      if (l.seq !== waiter.nextSeq) break;
      deliver(waiter, l.line, l.progress ? PROGRESS : l.continued ? 1 : 0);
      waiter.nextSeq++;
    }
  }

  private onDone(
    waiter: Waiter,
    lineCount: number,
    outcome: HostCallOutcome | undefined,
    last?: { s: number; l: [string, number][] },
  ): void {
    waiter.lines = waiter.lines
      .then(async () => {
        // The last lines came with the outcome: read only what is missing before them.
        if (last && waiter.nextSeq < last.s) await this.fetchLines(waiter);
        if (last && waiter.nextSeq >= last.s) {
          for (const [line, continued] of last.l.slice(waiter.nextSeq - last.s)) {
            deliver(waiter, line, continued);
            waiter.nextSeq++;
          }
        }
        if (waiter.nextSeq < lineCount) await this.fetchLines(waiter);
        let settled = outcome;
        if (!settled) {
          this.stats.roundTrips++;
          const row = await this.options.store.get(waiter.id);
          if (!row) throw new Error("the call's row is gone");
          settled = outcomeOf(row);
        }
        this.settle(waiter, settled);
      })
      .catch((error: Error) =>
        waiter.reject(
          new TurnoutError("E_UNAVAILABLE", `host ${waiter.host}: ${waiter.op}: ${error.message}`),
        ),
      );
  }

  private settle(waiter: Waiter, outcome: HostCallOutcome): void {
    if (!outcome.ok) {
      waiter.reject(
        new TurnoutError(errorCode(outcome.code), outcome.message, { host: waiter.host, op: waiter.op }),
      );
      return;
    }
    const parsed = waiter.parse(outcome.result);
    if (!parsed.success) {
      waiter.reject(new TurnoutError("E_INTERNAL", `host ${waiter.host}: malformed ${waiter.op} result`));
      return;
    }
    waiter.resolve(parsed.data);
  }

  // ---- both ------------------------------------------------------------------

  /** A NOTIFY payload from the listener. */
  receive(payload: string): void {
    let message: HostCallMessage;
    try {
      message = JSON.parse(payload) as HostCallMessage;
    } catch {
      return;
    }
    if (message.k === "hosts") {
      this.refreshHosts();
      return;
    }
    if (message.to !== this.options.owner) return;
    switch (message.k) {
      case "call":
        this.holder.claim();
        return;
      case "cancel":
        this.holder.cancel(message.id);
        return;
      case "log": {
        const waiter = this.waiting.get(message.id);
        if (waiter) this.onLog(waiter, message);
        return;
      }
      case "done": {
        const waiter = this.waiting.get(message.id);
        if (waiter)
          this.onDone(
            waiter,
            message.n,
            message.r,
            message.l && message.s !== undefined ? { s: message.s, l: message.l } : undefined,
          );
        return;
      }
    }
  }

  /** Listening (again): whatever was missed meanwhile is looked up. */
  listening(): void {
    this.holder.claim();
    this.refreshHosts();
    void this.checkWaiters(true);
  }

  /** Agents came or went here: the other servers re-read who holds what. */
  announceHosts(): void {
    this.stats.roundTrips++;
    this.options.store
      .announceHosts()
      .catch((e: Error) => this.options.report(`host calls: announcing hosts failed: ${e.message}`));
  }

  private refreshHosts(): void {
    this.hostRefresh.kick();
  }

  /** Who holds which agent, as the other servers last recorded it. */
  private async readHosts(): Promise<void> {
    const agents = await this.options.store.connectedAgents();
    const remote = new Map<string, string>();
    for (const { name, owner } of agents) if (owner !== this.options.owner) remote.set(name, owner);
    this.remote = remote;
  }

  private async heartbeat(): Promise<void> {
    this.servers = await this.options.store.heartbeat(this.options.owner);
  }

  private sweep(): void {
    if (this.closed) return;
    this.sweeps++;
    this.holder.claim();
    if (this.sweeps % Math.max(1, Math.round(this.timing.hostsRefreshMs / this.timing.sweepMs)) === 0)
      this.refreshHosts();
    void this.checkWaiters(this.sweeps % 3 === 0);
    this.holder.stopInvalid();
    if (this.sweeps % 600 === 1) {
      this.options.store
        .prune(3_600_000, 86_400_000)
        .catch((e: Error) => this.options.report(`host calls: pruning failed: ${e.message}`));
    }
  }

  /**
   * Calls waited on whose host moved or whose holder died are given up
   * (E_UNAVAILABLE: the orchestrator retries where the host is now); with
   * `lookUp`, calls settled without a notification reaching here are read.
   */
  private async checkWaiters(lookUp: boolean): Promise<void> {
    if (this.waiting.size === 0) return;
    for (const waiter of [...this.waiting.values()]) {
      const holder = this.remote.get(waiter.host);
      const local = this.options.local(waiter.host);
      const moved = local !== undefined || (holder !== undefined && holder !== waiter.target);
      if (moved || this.isDead(waiter.target)) {
        this.giveUp(waiter);
        waiter.reject(
          new TurnoutError(
            "E_UNAVAILABLE",
            `host ${waiter.host}: ${moved ? "reconnected to another server" : "the server holding it is gone"} during ${waiter.op}`,
            { host: waiter.host, op: waiter.op },
          ),
        );
      }
    }
    if (!lookUp || this.waiting.size === 0) return;
    try {
      this.stats.roundTrips++;
      const settled = await this.options.store.settled([...this.waiting.keys()]);
      for (const id of settled) {
        const waiter = this.waiting.get(id);
        if (waiter) this.onDone(waiter, Number.MAX_SAFE_INTEGER, undefined);
      }
    } catch (e) {
      this.options.report(`host calls: looking up calls failed: ${(e as Error).message}`);
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.sweeper);
    clearInterval(this.beater);
    const holderClosed = this.holder.close();
    const refreshed = this.hostRefresh.stop();
    for (const waiter of [...this.waiting.values()]) {
      this.giveUp(waiter);
      waiter.reject(new TurnoutError("E_UNAVAILABLE", `host ${waiter.host}: this server is shutting down`));
    }
    await holderClosed;
    await refreshed;
    await this.options.store.leave(this.options.owner).catch(() => undefined);
  }
}

/**
 * Call arguments as JSON, made once per arguments object: a fleet's hosts
 * share one stage spec (AgentHostOps), whose manifest can be large. Keyed
 * weakly, like AgentConnection's argsJson; arguments are never changed once sent.
 */
const argsTexts = new WeakMap<object, string>();

function argsText(args: object): string {
  let text = argsTexts.get(args);
  if (text === undefined) {
    text = JSON.stringify(args);
    argsTexts.set(args, text);
  }
  return text;
}

/** A line to the caller's waiter: output to its log, or an activation's progress report. */
function deliver(waiter: Waiter, line: string, continued: number): void {
  if (continued === PROGRESS) waiter.progress?.(line);
  else waiter.log?.(line, continued === 1);
}

function outcomeOf(row: HostCallRow): HostCallOutcome {
  if (row.status === "done") return { ok: true, result: row.result === null ? null : JSON.parse(row.result) };
  return {
    ok: false,
    code: row.error_code ?? "E_UNAVAILABLE",
    message: row.error_message ?? `host ${row.host}: ${row.op} ${row.status}`,
  };
}

function errorCode(code: string): ErrorCode {
  return (ERROR_CODES as readonly string[]).includes(code) ? (code as ErrorCode) : "E_INTERNAL";
}

function cancelled(host: string, op: string): TurnoutError {
  return new TurnoutError("E_UNAVAILABLE", `host ${host}: ${op} cancelled`, { host, op, cancelled: true });
}
