import { callArgs, type HostOp } from "../../agent/protocol.js";
import { isTurnoutError, TurnoutError } from "../../domain/errors.js";
import { CoalescedRunner } from "../../engine/coalesced-runner.js";
import type { HostCallOutcome, HostCallRow, HostCallStore } from "../../store/host-calls.js";
import { WriteBatcher } from "../../store/write-batcher.js";
import {
  ACTIVATE_OP,
  type ActivationResult,
  activationArgs,
  activationSpecOf,
  type OnSwitched,
} from "./activation.js";
import type { AgentConnection } from "./agent-connection.js";
import { type AgentCallTiming, AgentHostOps } from "./agent-host-ops.js";
import type { BlobSource, HostLog, StageResult, StageSpec } from "./host-ops.js";
import type { ManifestDiffs } from "./manifest-diffs.js";

/** What a holder needs of the router it belongs to. */
export interface HostCallHolderOptions {
  store: HostCallStore;
  owner: string;
  /** The agent connection of a host held by this server. */
  local(name: string): AgentConnection | undefined;
  /** The timeouts of the agent calls an activation makes here (activation.ts). */
  callTiming: AgentCallTiming;
  /**
   * Differences from the manifests this server's agents keep (agent
   * protocol 2): a routed stage call carries the whole manifest (the caller
   * does not know what the host keeps), and the holder, which does, sends
   * the agent the difference, as for a deploy of its own.
   */
  diffs?: ManifestDiffs | undefined;
  timing: {
    /** A call is started only while its deploy's lease has at least this much left. */
    leaseMarginMs: number;
    /** Output lines are sent to the caller at most this often per call. */
    logFlushMs: number;
    /** How long an outcome waits for others before its statement goes. */
    finishLingerMs: number;
  };
  /** Whether the server that made a call is gone (HostCallRouter.callerIsGone). */
  callerIsGone(owner: string): boolean;
  /** The router's counters, shared. */
  stats: { executed: number; roundTrips: number; lineBatches: number };
  report(message: string): void;
}

type FinishedCall = Parameters<HostCallStore["finishMany"]>[0][number];

/** Stage specs of routed stage calls kept parsed (a deploy or two at a time). */
const KEPT_STAGE_SPECS = 8;

/** An agent downloads a release's blobs itself (AgentHostOps.stage does not read this source). */
const AGENTS_FETCH_THEIR_OWN: BlobSource = {
  open: () => Promise.reject(new Error("an agent downloads its blobs from the server itself")),
};

interface Running {
  controller: AbortController;
}

/**
 * The holder's side of routed host calls (HostCallRouter is the rest): this
 * server holds the agent a call is for. It claims the calls meant for it,
 * runs each on the local AgentConnection (an activation as one `activate`
 * call, or the three an older agent takes, activation.ts; a stage with the
 * difference from a manifest the agent keeps), sends the output lines back as they
 * come and records the outcome. Writes of many calls go together
 * (WriteBatcher): a fleet batch's calls print and end at about the same
 * moments.
 */
export class HostCallHolder {
  private readonly running = new Map<string, Running>();
  /** Parsed stage specs by arguments text (see stageSpecOf). */
  private readonly stageSpecs = new Map<string, StageSpec>();
  private readonly executions = new Set<Promise<void>>();
  /** Outcomes to record, together (see queueFinish). */
  private readonly finishes: WriteBatcher<FinishedCall>;
  /** Output lines to send, of every call running here, together (see execute). */
  private readonly lineWrites = new WriteBatcher<Parameters<HostCallStore["appendLinesMany"]>[0][number]>(
    (batch) => {
      this.options.stats.roundTrips++;
      return this.options.store.appendLinesMany(batch);
    },
  );
  private readonly claims = new CoalescedRunner(
    () => this.claimNow(),
    0,
    (e) => this.options.report(`host calls: claiming failed: ${(e as Error).message}`),
  );

  constructor(private readonly options: HostCallHolderOptions) {
    this.finishes = new WriteBatcher<FinishedCall>(
      (batch) => {
        this.options.stats.roundTrips++;
        return this.options.store.finishMany(batch);
      },
      { lingerMs: options.timing.finishLingerMs },
    );
  }

  /** The caller gave up on a call running here: it is stopped (its outcome is still recorded). */
  cancel(id: string): void {
    this.running.get(id)?.controller.abort();
  }

  /** Calls running here whose deploy is no longer held by their caller are stopped. */
  stopInvalid(): void {
    if (this.running.size === 0) return;
    this.options.store
      .invalidRunning(this.options.owner, (o) => this.options.callerIsGone(o))
      .then((ids) => {
        for (const id of ids) this.cancel(id);
      })
      .catch((e: Error) => this.options.report(`host calls: checking running calls failed: ${e.message}`));
  }

  /** Stops every call running here and waits until each has recorded its outcome. */
  async close(): Promise<void> {
    for (const running of this.running.values()) running.controller.abort();
    await this.claims.stop();
    await Promise.allSettled([...this.executions]);
  }

  /**
   * Takes the pending calls meant for this server and starts them (once each:
   * SKIP LOCKED). One claim at a time; asks during one share one more after it.
   */
  claim(): void {
    this.claims.kick();
  }

  private async claimNow(): Promise<void> {
    this.options.stats.roundTrips++;
    const calls = await this.options.store.claim(this.options.owner, this.options.timing.leaseMarginMs, (o) =>
      this.options.callerIsGone(o),
    );
    for (const call of calls) {
      const execution = this.execute(call);
      this.executions.add(execution);
      void execution.finally(() => this.executions.delete(execution));
    }
  }

  private async execute(call: HostCallRow): Promise<void> {
    this.options.stats.executed++;
    const controller = new AbortController();
    this.running.set(call.id, { controller });
    let seq = 0;
    let buffer: { line: string; continued: boolean; progress?: boolean }[] = [];
    let flushing = Promise.resolve();
    let flushTimer: NodeJS.Timeout | undefined;
    const flush = () => {
      clearTimeout(flushTimer);
      flushTimer = undefined;
      const batch = buffer;
      buffer = [];
      if (batch.length === 0) return flushing;
      const first = seq;
      seq += batch.length;
      flushing = flushing.then(async () => {
        this.options.stats.lineBatches++;
        await this.lineWrites
          .add({ callId: call.id, caller: call.caller, firstSeq: first, lines: batch })
          .catch((e: Error) => this.options.report(`host calls: sending output failed: ${e.message}`));
      });
      return flushing;
    };
    const log: HostLog = (line, continued) => {
      buffer.push({ line, continued: continued === true });
      flushTimer ??= setTimeout(flush, this.options.timing.logFlushMs);
    };
    let outcome: HostCallOutcome;
    try {
      const connection = this.options.local(call.host);
      if (!connection || connection.closed) {
        throw new TurnoutError("E_UNAVAILABLE", `host ${call.host} is not connected to this server any more`);
      }
      let result: unknown;
      const stageSpec = call.op === "stage" ? this.stageSpecOf(call.args) : undefined;
      if (stageSpec) {
        result = await this.stageHere(call, connection, stageSpec, log, controller.signal);
      } else if (call.op === ACTIVATE_OP) {
        // The progress goes with the next line batch, or with the outcome when the restart and
        // health check end within logFlushMs: then the whole activation costs one statement here.
        const progress = (previous: string | null) => {
          buffer.push({ line: JSON.stringify({ previous }), continued: false, progress: true });
          flushTimer ??= setTimeout(flush, this.options.timing.logFlushMs);
        };
        result = await this.activateHere(call, connection, log, controller.signal, progress);
      } else {
        result = await connection.call(call.op as HostOp, JSON.parse(call.args), {
          log,
          signal: controller.signal,
          timeoutMs: call.timeout_ms,
          cancelGraceMs: this.options.callTiming.cancelGraceMs,
        });
      }
      outcome = { ok: true, result };
    } catch (error) {
      outcome = {
        ok: false,
        code: isTurnoutError(error) ? error.code : "E_INTERNAL",
        message: (error as Error).message,
      };
    } finally {
      this.running.delete(call.id);
    }
    // Lines not sent yet go with the outcome, in its statement and notification (see finishMany).
    clearTimeout(flushTimer);
    await flushing;
    const last = { firstSeq: seq, lines: buffer };
    buffer = [];
    seq += last.lines.length;
    await this.queueFinish({ callId: call.id, caller: call.caller, outcome, lines: seq, last }).catch(
      (e: Error) => this.options.report(`host calls: recording an outcome failed: ${e.message}`),
    );
  }

  /**
   * The stage spec of a routed stage call that carries a whole manifest,
   * parsed once per arguments text: the calls of one deploy's hosts share
   * it, so the difference for a base is made and serialised once
   * (ManifestDiffs and AgentConnection key their caches on the objects).
   */
  private stageSpecOf(args: string): StageSpec | undefined {
    if (!this.options.diffs) return undefined;
    const known = this.stageSpecs.get(args);
    if (known) return known;
    const parsed = callArgs.stage.safeParse(safeJson(args));
    if (!parsed.success || !parsed.data.spec.manifest) return undefined;
    // The entries are checked on the host (planRelease), as for a call of this server's own.
    const spec = parsed.data.spec as unknown as StageSpec;
    if (this.stageSpecs.size >= KEPT_STAGE_SPECS)
      this.stageSpecs.delete(this.stageSpecs.keys().next().value!);
    this.stageSpecs.set(args, spec);
    return spec;
  }

  /** A routed stage, sent to the agent as a difference from a manifest it keeps when there is one. */
  private stageHere(
    call: HostCallRow,
    connection: AgentConnection,
    spec: StageSpec,
    log: HostLog,
    signal: AbortSignal,
  ): Promise<StageResult> {
    return this.opsOn(call, connection).stage(spec, AGENTS_FETCH_THEIR_OWN, log, signal);
  }

  /** A routed activation, run here as one agent call, or as the three an older agent takes (activation.ts). */
  private activateHere(
    call: HostCallRow,
    connection: AgentConnection,
    log: HostLog,
    signal: AbortSignal,
    onSwitched: OnSwitched,
  ): Promise<ActivationResult> {
    const args = activationArgs.safeParse(safeJson(call.args));
    if (!args.success) {
      throw new TurnoutError("E_INTERNAL", `host ${call.host}: malformed ${ACTIVATE_OP} arguments`);
    }
    return this.opsOn(call, connection).activate(activationSpecOf(args.data), log, signal, onSwitched);
  }

  /** The call's host as this server reaches it: its agent's connection here, as for a deploy of its own. */
  private opsOn(call: HostCallRow, connection: AgentConnection): AgentHostOps {
    return new AgentHostOps(call.host, () => connection, this.options.callTiming, this.options.diffs);
  }

  /**
   * Outcomes of calls that end within finishLingerMs of each other, or while
   * the previous group is being recorded, are recorded in one statement.
   */
  private queueFinish(finished: FinishedCall): Promise<void> {
    return this.finishes.add(finished);
  }
}

/** The value of a JSON text, or undefined when it is not JSON (checked by a schema after). */
export function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
