import { type Kysely, type RawBuilder, sql } from "kysely";
import type { HostTarget } from "./fleet.js";
import { nowIso } from "./rows.js";
import type { Schema } from "./schema.js";
import { WriteBatcher } from "./write-batcher.js";

/**
 * A fleet deploy's per-host writes on PostgreSQL, where every statement is a
 * round trip and most of what a server spends per host (docs/benchmarks.md,
 * "Control plane at scale"): a host's step in the deploy (deploy_hosts) and
 * what it runs (host_targets). They share one WriteBatcher, so a host's
 * "switched" and its target, asked for together, and the steps and targets
 * of every host answering meanwhile, are one statement: the targets' upsert
 * as a data-modifying WITH in front of the steps' UPDATE, all or none.
 *
 * A group waits `lingerMs` for the rest of a fleet batch: its hosts answer a
 * few milliseconds apart, each in a turn of its own, and without the wait
 * they were a statement or two apiece. SQLite writes these in the turn's
 * group commit instead (FleetStore).
 */

/** One host's step update of a deploy: the columns it sets (FleetStore.updateDeployHost). */
export interface HostStepUpdate {
  deployId: number;
  hostId: number;
  set: Record<string, unknown>;
}

/**
 * How long a group of host writes waits for more. A fleet batch's hosts
 * answer within a few milliseconds of each other; each step a host takes
 * waits this long once, a few tens of milliseconds over a deploy.
 */
export const HOST_WRITE_LINGER_MS = 3;

type HostWrite = { step: HostStepUpdate } | { target: HostTarget };

export class FleetHostWrites {
  private readonly batcher: WriteBatcher<HostWrite>;

  constructor(
    private readonly db: Kysely<Schema>,
    lingerMs = HOST_WRITE_LINGER_MS,
  ) {
    this.batcher = new WriteBatcher((batch) => this.write(batch), { lingerMs });
  }

  step(update: HostStepUpdate): Promise<void> {
    return this.batcher.add({ step: update });
  }

  target(target: HostTarget): Promise<void> {
    return this.batcher.add({ target });
  }

  private async write(batch: HostWrite[]): Promise<void> {
    // In the order asked: two steps of one host in a group end on the later, field by field;
    // a statement may not change a row twice, so a target set twice in a group is the later.
    const steps = new Map<string, HostStepUpdate>();
    const targets = new Map<string, HostTarget>();
    for (const write of batch) {
      if ("target" in write) {
        const t = write.target;
        targets.set(`${t.hostId}\n${t.app}\n${t.env}`, t);
        continue;
      }
      const u = write.step;
      const key = `${u.deployId}:${u.hostId}`;
      const known = steps.get(key);
      if (known) Object.assign(known.set, u.set);
      else steps.set(key, { deployId: u.deployId, hostId: u.hostId, set: { ...u.set } });
    }
    const update = steps.size > 0 ? updateStepsSql([...steps.values()]) : undefined;
    const upsert = targets.size > 0 ? upsertTargetsSql([...targets.values()], nowIso()) : undefined;
    const statement =
      update && upsert ? sql`WITH t AS (${upsert} RETURNING 1) ${update}` : (update ?? upsert)!;
    await statement.execute(this.db);
  }
}

/**
 * Hosts' steps in one UPDATE: each column comes with a flag saying whether
 * that host's update sets it, so hosts moving to different steps with
 * different fields still share the statement.
 */
function updateStepsSql(rows: HostStepUpdate[]): RawBuilder<unknown> {
  const values = (column: string) => rows.map((r) => (column in r.set ? r.set[column] : null));
  const given = (column: string) => rows.map((r) => column in r.set);
  const column = (name: string, type: string) =>
    sql`${sql.ref(name)} = CASE WHEN v.${sql.raw(`${name}_set`)} THEN v.${sql.raw(name)}::${sql.raw(type)} ELSE d.${sql.ref(name)} END`;
  return sql`
    UPDATE deploy_hosts AS d
    SET updated_at = v.updated_at,
        ${column("step", "text")}, ${column("batch", "int")}, ${column("previous_release", "text")},
        ${column("switched", "int")}, ${column("switched_at", "text")}, ${column("bytes_fetched", "bigint")},
        ${column("error", "text")}
    FROM unnest(
      ${rows.map((r) => r.deployId)}::int[], ${rows.map((r) => r.hostId)}::int[], ${values("updated_at")}::text[],
      ${values("step")}::text[], ${given("step")}::bool[], ${values("batch")}::int[], ${given("batch")}::bool[],
      ${values("previous_release")}::text[], ${given("previous_release")}::bool[],
      ${values("switched")}::int[], ${given("switched")}::bool[],
      ${values("switched_at")}::text[], ${given("switched_at")}::bool[],
      ${values("bytes_fetched")}::bigint[], ${given("bytes_fetched")}::bool[],
      ${values("error")}::text[], ${given("error")}::bool[]
    ) AS v(deploy_id, host_id, updated_at, step, step_set, batch, batch_set, previous_release, previous_release_set,
           switched, switched_set, switched_at, switched_at_set, bytes_fetched, bytes_fetched_set, error, error_set)
    WHERE d.deploy_id = v.deploy_id AND d.host_id = v.host_id`;
}

/** Targets inserted or replaced in one statement, as unnest columns: one text whatever their number. */
function upsertTargetsSql(targets: HostTarget[], now: string): RawBuilder<unknown> {
  const column = <T>(pick: (t: HostTarget) => T) => targets.map(pick);
  return sql`
    INSERT INTO host_targets (host_id, app, env, desired_release, actual_release, previous_release, deploy_id, updated_at)
    SELECT t.*, ${now}::text FROM unnest(${column((t) => t.hostId)}::int[], ${column((t) => t.app)}::text[],
                                   ${column((t) => t.env)}::text[], ${column((t) => t.desiredRelease)}::text[],
                                   ${column((t) => t.actualRelease)}::text[], ${column((t) => t.previousRelease)}::text[],
                                   ${column((t) => t.deployId)}::int[]) AS t
    ON CONFLICT (host_id, app, env) DO UPDATE SET
      desired_release = excluded.desired_release, actual_release = excluded.actual_release,
      previous_release = excluded.previous_release, deploy_id = excluded.deploy_id,
      updated_at = excluded.updated_at`;
}
