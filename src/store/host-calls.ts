import { type Kysely, type Selectable, sql } from "kysely";
import type { Capabilities } from "./capabilities.js";
import type { HostCallsTable, Schema } from "./schema.js";

/**
 * Host operations routed between servers sharing one PostgreSQL (migration
 * 0020). The rows are the durable state; NOTIFY on one channel per schema
 * wakes the other side with a small JSON message (see HostCallMessage). Every
 * write that the other side waits for carries its NOTIFY in the same
 * statement, so a routed call costs few round trips (docs/architecture.md).
 *
 * PostgreSQL only: with SQLite one server holds every agent and nothing is
 * routed.
 */

/** What NOTIFY carries. `to` is the owner id it is meant for ("*": every server). */
export type HostCallMessage =
  | { to: string; k: "call"; id: string }
  | { to: string; k: "cancel"; id: string }
  | { to: string; k: "log"; id: string; s: number; l?: [string, number][] }
  | { to: string; k: "done"; id: string; n: number; r?: HostCallOutcome; s?: number; l?: [string, number][] }
  | { to: "*"; k: "hosts" };

export type HostCallOutcome =
  | { ok: true; result: unknown }
  | { ok: false; code: string; message: string; abandoned?: boolean };

export interface NewHostCall {
  id: string;
  deployId: number;
  host: string;
  caller: string;
  target: string;
  op: string;
  args: string;
  timeoutMs: number;
}

export type HostCallRow = Selectable<HostCallsTable>;

/**
 * A line sent back to the caller: the host's output (`continued`: a piece of
 * a longer line), or (`progress`) a routed activation's report that the host
 * was switched (providers/fleet/activation.ts), never shown in a log.
 * Stored and notified as one number: 0 a line, 1 a piece, 2 a report.
 */
export interface HostCallLine {
  line: string;
  continued: boolean;
  progress?: boolean | undefined;
}

function kindOf(line: HostCallLine): number {
  return line.progress ? 2 : line.continued ? 1 : 0;
}

/** NOTIFY payloads are limited to 8000 bytes; bigger results and line batches are read from the rows. */
const PAYLOAD_LIMIT = 7000;

/** The deploy states in which its holder may still call hosts (store/deploys.ts ACTIVE). */
const ACTIVE_SQL = sql`('waiting', 'running')`;

/** One channel per schema: tests (and several installations) share a database, each in its own schema. */
const CHANNEL = sql`'turnout_hc_' || substr(md5(current_schema()), 1, 20)`;

/** A call's "done" notification: with its outcome and last lines when they fit, else with what fits. */
function doneMessage(call: {
  callId: string;
  caller: string;
  outcome: HostCallOutcome;
  lines: number;
  last?: { firstSeq: number; lines: HostCallLine[] };
}): string {
  const base = { to: call.caller, k: "done" as const, id: call.callId, n: call.lines };
  const last = call.last && call.last.lines.length > 0 ? call.last : undefined;
  const candidates: HostCallMessage[] = [
    ...(last
      ? [
          {
            ...base,
            r: call.outcome,
            s: last.firstSeq,
            l: last.lines.map((l): [string, number] => [l.line, kindOf(l)]),
          },
        ]
      : []),
    { ...base, r: call.outcome },
  ];
  for (const message of candidates) {
    const text = JSON.stringify(message);
    if (Buffer.byteLength(text) <= PAYLOAD_LIMIT) return text;
  }
  return JSON.stringify(base);
}

export class HostCallStore {
  constructor(
    private readonly db: Kysely<Schema>,
    readonly caps: Capabilities,
  ) {}

  /** The LISTEN channel name of this schema. */
  async channel(): Promise<string> {
    const { rows } = await sql<{ channel: string }>`select ${CHANNEL} as channel`.execute(this.db);
    return rows[0]!.channel;
  }

  /** Records a call and wakes its target, in one statement. */
  async create(call: NewHostCall): Promise<void> {
    await this.createMany([call]);
  }

  /**
   * Records calls and wakes each of their targets once, in one statement: a
   * batch of a fleet deploy asks the same operation of many hosts in the
   * same turn of the event loop, and one INSERT and one NOTIFY per call was
   * most of the routing's round trips (docs/benchmarks.md). All or none.
   */
  async createMany(calls: NewHostCall[]): Promise<void> {
    if (calls.length === 0) return;
    const wake = new Map<string, string>();
    for (const call of calls) {
      if (!wake.has(call.target))
        wake.set(
          call.target,
          JSON.stringify({ to: call.target, k: "call", id: call.id } satisfies HostCallMessage),
        );
    }
    const now = new Date().toISOString();
    const column = <T>(pick: (call: NewHostCall) => T) => calls.map(pick);
    await sql`
      WITH c AS (
        INSERT INTO host_calls (id, deploy_id, host, caller, target, op, args, timeout_ms, status, created_at)
        SELECT t.id, t.deploy_id, t.host, t.caller, t.target, t.op, t.args, t.timeout_ms, 'pending', ${now}
        FROM unnest(${column((c) => c.id)}::text[], ${column((c) => c.deployId)}::int[],
                    ${column((c) => c.host)}::text[], ${column((c) => c.caller)}::text[],
                    ${column((c) => c.target)}::text[], ${column((c) => c.op)}::text[],
                    ${column((c) => c.args)}::text[], ${column((c) => c.timeoutMs)}::int[])
             AS t(id, deploy_id, host, caller, target, op, args, timeout_ms)
        RETURNING 1
      )
      SELECT pg_notify(${CHANNEL}, m.message)
      FROM unnest(${[...wake.values()]}::text[]) AS m(message)
      WHERE (SELECT count(*) FROM c) > 0`.execute(this.db);
  }

  /**
   * Takes the pending calls meant for `target`, each at most once (SKIP
   * LOCKED: two sweeps of the same server never both take one). A call
   * whose deploy is no longer held by its caller under a lease with at least
   * `marginMs` left (finished, recovered by another server, or about to
   * be) is marked abandoned instead and never executed. Returns the calls
   * to execute.
   */
  async claim(
    target: string,
    marginMs: number,
    callerIsDead: (owner: string) => boolean,
  ): Promise<HostCallRow[]> {
    const validUntil = new Date(Date.now() + marginMs).toISOString();
    const now = new Date().toISOString();
    const { rows } = await sql<HostCallRow & { valid: boolean }>`
      WITH picked AS (
        SELECT c.id, (d.id IS NOT NULL AND d.lease_owner = c.caller AND d.status IN ${ACTIVE_SQL}
                      AND d.lease_expires_at > ${validUntil}) AS valid
        FROM host_calls c LEFT JOIN deploys d ON d.id = c.deploy_id
        WHERE c.target = ${target} AND c.status = 'pending'
        ORDER BY c.created_at
        FOR UPDATE OF c SKIP LOCKED
      )
      UPDATE host_calls c
      SET status = CASE WHEN p.valid THEN 'running' ELSE 'abandoned' END,
          started_at = CASE WHEN p.valid THEN ${now} ELSE NULL END,
          finished_at = CASE WHEN p.valid THEN NULL ELSE ${now} END,
          error_code = CASE WHEN p.valid THEN NULL ELSE 'E_UNAVAILABLE' END,
          error_message = CASE WHEN p.valid THEN NULL ELSE 'the deploy that made this call is no longer running' END
      FROM picked p WHERE p.id = c.id
      RETURNING c.*, p.valid`.execute(this.db);
    const run: HostCallRow[] = [];
    for (const row of rows) {
      if (!row.valid) continue;
      // A caller on this machine whose process is gone is recovered at once (engine/owner.ts): do not start its call.
      if (callerIsDead(row.caller)) {
        await this.finish(row.id, row.caller, {
          ok: false,
          code: "E_UNAVAILABLE",
          message: "the server that made this call is gone",
          abandoned: true,
        });
        continue;
      }
      const { valid: _valid, ...call } = row;
      run.push(call);
    }
    return run;
  }

  /** Running calls of `target` whose deploy is no longer held by their caller: to be aborted. */
  async invalidRunning(target: string, callerIsDead: (owner: string) => boolean): Promise<string[]> {
    const now = new Date().toISOString();
    const { rows } = await sql<{ id: string; caller: string; valid: boolean }>`
      SELECT c.id, c.caller, (d.id IS NOT NULL AND d.lease_owner = c.caller AND d.status IN ${ACTIVE_SQL}
                              AND d.lease_expires_at > ${now}) AS valid
      FROM host_calls c LEFT JOIN deploys d ON d.id = c.deploy_id
      WHERE c.target = ${target} AND c.status = 'running'`.execute(this.db);
    return rows.filter((r) => !r.valid || callerIsDead(r.caller)).map((r) => r.id);
  }

  /** Appends output lines (numbered from `firstSeq`) and tells the caller, in one statement. */
  async appendLines(callId: string, caller: string, firstSeq: number, lines: HostCallLine[]): Promise<void> {
    await this.appendLinesMany([{ callId, caller, firstSeq, lines }]);
  }

  /**
   * Appends output lines of several calls and tells each caller, in one
   * statement: the calls a holder claimed together (a fleet batch's hosts)
   * print their lines at about the same moments. All or none.
   */
  async appendLinesMany(
    batches: { callId: string; caller: string; firstSeq: number; lines: HostCallLine[] }[],
  ): Promise<void> {
    const some = batches.filter((b) => b.lines.length > 0);
    if (some.length === 0) return;
    const messages = some.map(({ callId, caller, firstSeq, lines }) => {
      const message = JSON.stringify({
        to: caller,
        k: "log",
        id: callId,
        s: firstSeq,
        l: lines.map((l): [string, number] => [l.line, kindOf(l)]),
      } satisfies HostCallMessage);
      return Buffer.byteLength(message) <= PAYLOAD_LIMIT
        ? message
        : JSON.stringify({ to: caller, k: "log", id: callId, s: firstSeq } satisfies HostCallMessage);
    });
    const rows = some.flatMap((b) =>
      b.lines.map((l, i) => ({ callId: b.callId, seq: b.firstSeq + i, line: l.line, kind: kindOf(l) })),
    );
    await sql`
      WITH ins AS (
        INSERT INTO host_call_lines (call_id, seq, line, continued)
        SELECT * FROM unnest(${rows.map((r) => r.callId)}::text[], ${rows.map((r) => r.seq)}::int[],
                             ${rows.map((r) => r.line)}::text[], ${rows.map((r) => r.kind)}::int[])
        RETURNING 1
      )
      SELECT pg_notify(${CHANNEL}, m.message)
      FROM unnest(${messages}::text[]) AS m(message)
      WHERE (SELECT count(*) FROM ins) >= 0`.execute(this.db);
  }

  async linesSince(callId: string, seq: number): Promise<({ seq: number } & HostCallLine)[]> {
    const rows = await this.db
      .selectFrom("host_call_lines")
      .select(["seq", "line", "continued"])
      .where("call_id", "=", callId)
      .where("seq", ">=", seq)
      .orderBy("seq")
      .execute();
    return rows.map((r) => ({
      seq: r.seq,
      line: r.line,
      continued: r.continued === 1,
      ...(r.continued === 2 ? { progress: true } : {}),
    }));
  }

  /** Records a running call's outcome and tells the caller (with the outcome when it fits), in one statement. */
  async finish(callId: string, caller: string, outcome: HostCallOutcome, lines = 0): Promise<void> {
    await this.finishMany([{ callId, caller, outcome, lines }]);
  }

  /**
   * Records calls' outcomes, with each call's last output lines (numbered
   * from `firstSeq`, the call's `lines` in all), and tells each caller, in
   * one statement. The notification carries the outcome and those lines when
   * they fit, so a short call costs its caller no read at all; calls that
   * end in the same turn of the event loop share the statement (the
   * holder's side of a fleet batch). All or none.
   */
  async finishMany(
    calls: {
      callId: string;
      caller: string;
      outcome: HostCallOutcome;
      lines: number;
      last?: { firstSeq: number; lines: HostCallLine[] };
    }[],
  ): Promise<void> {
    if (calls.length === 0) return;
    const lineRows = calls.flatMap((c) =>
      (c.last?.lines ?? []).map((l, i) => ({
        callId: c.callId,
        seq: c.last!.firstSeq + i,
        line: l.line,
        continued: kindOf(l),
      })),
    );
    const statusOf = (o: HostCallOutcome) => (o.ok ? "done" : o.abandoned ? "abandoned" : "failed");
    await sql`
      WITH v AS (
        SELECT * FROM unnest(${calls.map((c) => c.callId)}::text[], ${calls.map((c) => statusOf(c.outcome))}::text[],
                             ${calls.map((c) => (c.outcome.ok ? JSON.stringify(c.outcome.result ?? null) : null))}::text[],
                             ${calls.map((c) => (c.outcome.ok ? null : c.outcome.code))}::text[],
                             ${calls.map((c) => (c.outcome.ok ? null : c.outcome.message))}::text[],
                             ${calls.map(doneMessage)}::text[])
          AS v(id, status, result, error_code, error_message, message)
      ), l AS (
        INSERT INTO host_call_lines (call_id, seq, line, continued)
        SELECT * FROM unnest(${lineRows.map((r) => r.callId)}::text[], ${lineRows.map((r) => r.seq)}::int[],
                             ${lineRows.map((r) => r.line)}::text[], ${lineRows.map((r) => r.continued)}::int[])
        RETURNING 1
      ), u AS (
        UPDATE host_calls h
        SET status = v.status, finished_at = ${new Date().toISOString()},
            started_at = CASE WHEN v.status = 'abandoned' THEN NULL ELSE h.started_at END,
            result = v.result, error_code = v.error_code, error_message = v.error_message
        FROM v WHERE h.id = v.id AND h.status IN ('pending', 'running')
        RETURNING h.id
      )
      SELECT pg_notify(${CHANNEL}, v.message) FROM v JOIN u ON u.id = v.id
      WHERE (SELECT count(*) FROM l) >= 0`.execute(this.db);
  }

  /** A call's state, for a caller that missed its notification or whose result was too big for one. */
  async get(callId: string): Promise<HostCallRow | undefined> {
    return this.db.selectFrom("host_calls").selectAll().where("id", "=", callId).executeTakeFirst();
  }

  /**
   * The caller gives up on a call (cancelled, timed out, target gone): a
   * pending call becomes abandoned at once (never executed); a running one
   * is flagged and its target told to stop it.
   */
  async cancel(callId: string, target: string): Promise<void> {
    const message = JSON.stringify({ to: target, k: "cancel", id: callId } satisfies HostCallMessage);
    await sql`
      WITH a AS (
        UPDATE host_calls SET status = 'abandoned', finished_at = ${new Date().toISOString()},
          error_code = 'E_UNAVAILABLE', error_message = 'given up by its caller'
        WHERE id = ${callId} AND status = 'pending' RETURNING id
      ), r AS (
        UPDATE host_calls SET cancel_requested = 1 WHERE id = ${callId} AND status = 'running' RETURNING id
      )
      SELECT pg_notify(${CHANNEL}, ${message}) FROM r`.execute(this.db);
  }

  /** Tells every server that agents came or went, so they re-read who holds which host. */
  async announceHosts(): Promise<void> {
    const message = JSON.stringify({ to: "*", k: "hosts" } satisfies HostCallMessage);
    await sql`SELECT pg_notify(${CHANNEL}, ${message})`.execute(this.db);
  }

  /** Agent hosts marked connected, with the server process holding each. */
  async connectedAgents(): Promise<{ name: string; owner: string }[]> {
    const rows = await this.db
      .selectFrom("hosts")
      .select(["name", "connected_to"])
      .where("kind", "=", "agent")
      .where("connected", "=", 1)
      .execute();
    return rows.filter((r) => r.connected_to !== null).map((r) => ({ name: r.name, owner: r.connected_to! }));
  }

  /** Calls of `ids` that are settled (their notification may have been missed). */
  async settled(ids: string[]): Promise<string[]> {
    if (ids.length === 0) return [];
    const rows = await this.db
      .selectFrom("host_calls")
      .select("id")
      .where("id", "in", ids)
      .where("status", "in", ["done", "failed", "abandoned"])
      .execute();
    return rows.map((r) => r.id);
  }

  /**
   * This server is alive (one row per server process), and every server's
   * last heartbeat, in one round trip.
   */
  async heartbeat(owner: string): Promise<Map<string, number>> {
    const now = new Date().toISOString();
    const { rows } = await sql<{ owner: string; seen_at: string }>`
      WITH up AS (
        INSERT INTO servers (owner, seen_at) VALUES (${owner}, ${now})
        ON CONFLICT (owner) DO UPDATE SET seen_at = excluded.seen_at
        RETURNING owner, seen_at
      )
      SELECT owner, seen_at FROM servers WHERE owner <> ${owner}
      UNION ALL SELECT owner, seen_at FROM up`.execute(this.db);
    return new Map(rows.map((r) => [r.owner, Date.parse(r.seen_at)]));
  }

  /** A server stopping cleanly says so; rows of servers gone for a day are removed. */
  async leave(owner: string): Promise<void> {
    const old = new Date(Date.now() - 86_400_000).toISOString();
    await this.db
      .deleteFrom("servers")
      .where((eb) => eb.or([eb("owner", "=", owner), eb("seen_at", "<", old)]))
      .execute();
  }

  /** Removes calls settled longer than `settledMs` ago, and any call older than `anyMs` (a dead target's). */
  async prune(settledMs: number, anyMs: number): Promise<void> {
    const settled = new Date(Date.now() - settledMs).toISOString();
    const any = new Date(Date.now() - anyMs).toISOString();
    await sql`
      WITH gone AS (
        DELETE FROM host_calls
        WHERE (status IN ('done', 'failed', 'abandoned') AND finished_at < ${settled}) OR created_at < ${any}
        RETURNING id
      )
      DELETE FROM host_call_lines WHERE call_id IN (SELECT id FROM gone)`.execute(this.db);
  }
}
