import { type Kysely, type Selectable, sql } from "kysely";
import type { AuditActor } from "../domain/audit.js";
import { notFound, TurnoutError } from "../domain/errors.js";
import type { HostAppInventory, HostKind, HostWithApps } from "../domain/fleet.js";
import { applyGrant, grantCovers, type HostGrant } from "../domain/host-grant.js";
import type { Principal } from "../domain/roles.js";
import { insertAudit } from "./audit.js";
import type { Capabilities } from "./capabilities.js";
import { type GroupCommit, groupCommitFor } from "./group-commit.js";
import { fromJson, nowIso, toJson } from "./rows.js";
import type { HostAppsTable, HostsTable, Schema } from "./schema.js";
import { TokenUsage } from "./token-usage.js";
import { hashToken } from "./tokens.js";
import { WriteBatcher } from "./write-batcher.js";

/** A host with what it last reported holding, per app (sorted by app). */
export interface HostRecord extends HostWithApps {
  /** Agents: when the host's own token was last used (to connect or download), to the minute; null: never. */
  tokenLastUsedAt: string | null;
  /** Which server process holds the agent's connection (null: none, or an SSH host). */
  connectedTo: string | null;
}

/**
 * Hosts and what they hold (tables hosts, host_apps). Agents enroll
 * themselves here when they say hello; host tokens, like API tokens, are
 * stored only as a sha256.
 */
interface InventoryChange {
  hostId: number;
  changed: HostAppInventory[];
  /** Layouts gone: an app with its deploy path (undefined: <root>/<app>). */
  removed: Pick<HostAppInventory, "app" | "path">[];
  seen: { owner: string; at: string } | undefined;
}

export class HostStore {
  constructor(
    private readonly db: Kysely<Schema>,
    private readonly caps: Capabilities,
    private readonly usage: TokenUsage = new TokenUsage(),
    /** SQLite: the writes of a turn, of every store, in one commit (group-commit.ts). */
    private readonly group: GroupCommit | undefined = groupCommitFor(db, caps),
  ) {}

  async list(): Promise<HostRecord[]> {
    const [hosts, apps, pools] = await Promise.all([
      this.db.selectFrom("hosts").selectAll().orderBy("name").execute(),
      this.db.selectFrom("host_apps").selectAll().orderBy("app").orderBy("path").execute(),
      this.db
        .selectFrom("host_pool")
        .select(["host_id", "app"])
        .where("pool_state", "=", "depooled")
        .orderBy("app")
        .execute(),
    ]);
    const byHost = new Map<number, HostAppInventory[]>();
    for (const row of apps) {
      const list = byHost.get(row.host_id) ?? [];
      list.push(toInventory(row));
      byHost.set(row.host_id, list);
    }
    const depooled = new Map<number, string[]>();
    for (const row of pools) depooled.set(row.host_id, [...(depooled.get(row.host_id) ?? []), row.app]);
    return hosts.map((row) => toRecord(row, byHost.get(row.id) ?? [], depooled.get(row.id) ?? []));
  }

  private async depooledApps(hostId: number): Promise<string[]> {
    const rows = await this.db
      .selectFrom("host_pool")
      .select("app")
      .where("host_id", "=", hostId)
      .where("pool_state", "=", "depooled")
      .orderBy("app")
      .execute();
    return rows.map((r) => r.app);
  }

  async get(name: string): Promise<HostRecord | undefined> {
    const row = await this.db.selectFrom("hosts").selectAll().where("name", "=", name).executeTakeFirst();
    if (!row) return undefined;
    const apps = await this.db
      .selectFrom("host_apps")
      .selectAll()
      .where("host_id", "=", row.id)
      .orderBy("app")
      .execute();
    return toRecord(row, apps.map(toInventory), await this.depooledApps(row.id));
  }

  /**
   * The agent host a host token belongs to: authentication (HTTP and agent
   * connections), so a use of the token is recorded (throttled).
   */
  async findByToken(token: string): Promise<HostRecord | undefined> {
    const row = await this.db
      .selectFrom("hosts")
      .selectAll()
      .where("token_hash", "=", hashToken(token))
      .where("kind", "=", "agent")
      .executeTakeFirst();
    if (!row) return undefined;
    await this.tokenUsed(row.id);
    // Authentication only: neither inventory nor pool state is needed.
    return toRecord(row, [], []);
  }

  /** See token-usage.ts; a failed write never refuses a valid token. */
  private async tokenUsed(id: number): Promise<void> {
    await this.usage.record(`host:${id}`, (now, staleBefore) =>
      this.db
        .updateTable("hosts")
        .set({ token_last_used_at: now })
        .where("id", "=", id)
        .where((eb) =>
          eb.or([eb("token_last_used_at", "is", null), eb("token_last_used_at", "<", staleBefore)]),
        )
        .execute(),
    );
  }

  /**
   * A host token as an API principal with the `agent` role, naming its host:
   * what it may download is what the server sent that host (see
   * artifacts/read-access.ts), for the bearer authenticator.
   */
  async authenticate(token: string): Promise<Principal | undefined> {
    const host = await this.findByToken(token);
    return host
      ? {
          tokenId: -host.id,
          name: `host:${host.name}`,
          role: "agent",
          apps: host.grant.apps,
          host: { id: host.id, name: host.name },
        }
      : undefined;
  }

  /**
   * An agent said hello: creates its host (pooled) or updates the labels of
   * the existing one, and records it as connected to `owner`. `tokenHash`
   * replaces the stored host token when given (a fresh enrollment), and
   * `grant` the host's grant: the enrolling token's, which must cover the
   * grant an existing host has (E_FORBIDDEN otherwise), so no token takes a
   * host away from a grant it does not hold. Null keeps the grant (a host
   * reconnecting with its own token).
   */
  async enrollAgent(input: {
    name: string;
    labels: Record<string, string>;
    owner: string;
    tokenHash: string | null;
    grant: HostGrant | null;
  }): Promise<HostRecord> {
    const now = nowIso();
    const update = {
      labels: toJson(input.labels),
      connected: 1,
      connected_to: input.owner,
      last_seen_at: now,
      // A new host token has not been used yet.
      ...(input.tokenHash !== null ? { token_hash: input.tokenHash, token_last_used_at: null } : {}),
      ...(input.grant !== null ? grantColumns(input.grant) : {}),
    };
    for (let attempt = 0; ; attempt++) {
      const existing = await this.db
        .selectFrom("hosts")
        .selectAll()
        .where("name", "=", input.name)
        .executeTakeFirst();
      if (existing) {
        if (existing.kind !== "agent") {
          throw new TurnoutError(
            "E_CONFLICT",
            `host '${input.name}' is configured as an ${existing.kind} host, not an agent`,
            { host: input.name, kind: existing.kind },
          );
        }
        if (input.grant !== null && !grantCovers(input.grant, grantOf(existing))) {
          throw new TurnoutError(
            "E_FORBIDDEN",
            `host '${input.name}' is enrolled with a grant this token does not cover: an admin can change the host's grant (turnout hosts grant)`,
            { host: input.name },
          );
        }
        const row = await this.db
          .updateTable("hosts")
          .set(update)
          .where("id", "=", existing.id)
          // The grant checked above is the one replaced: a concurrent change makes this miss, and the hello fail.
          .where("grant_apps", existing.grant_apps === null ? "is" : "=", existing.grant_apps)
          .where("grant_labels", existing.grant_labels === null ? "is" : "=", existing.grant_labels)
          .returningAll()
          .executeTakeFirst();
        if (!row) {
          if (attempt === 0) continue;
          throw new TurnoutError("E_CONFLICT", `host '${input.name}' changed while enrolling: try again`);
        }
        return this.withApps(row);
      }
      try {
        const row = await this.db
          .insertInto("hosts")
          .values({
            name: input.name,
            kind: "agent",
            address: null,
            pool_state: "pooled",
            created_at: now,
            token_hash: null,
            // A host reconnecting with its own token always has a row: a new one without a grant gets nothing.
            ...grantColumns({ apps: [], labels: [] }),
            ...update,
          })
          .returningAll()
          .executeTakeFirstOrThrow();
        return toRecord(row, [], await this.depooledApps(row.id));
      } catch (error) {
        // Another server enrolled the same name at the same moment: update theirs.
        if (attempt === 0 && this.caps.isUniqueViolation(error)) continue;
        throw error;
      }
    }
  }

  /**
   * An admin changes what an agent host may receive. Artifacts sent to it
   * for apps it no longer has are no longer readable by it.
   */
  async setGrant(name: string, grant: HostGrant, by: AuditActor | string): Promise<HostRecord> {
    const row = await this.db.transaction().execute(async (trx) => {
      const updated = await trx
        .updateTable("hosts")
        .set(grantColumns(grant))
        .where("name", "=", name)
        .where("kind", "=", "agent")
        .returningAll()
        .executeTakeFirst();
      if (!updated) return undefined;
      if (grant.apps !== null) {
        let gone = trx.deleteFrom("host_artifacts").where("host_id", "=", updated.id);
        if (grant.apps.length > 0) gone = gone.where("app", "not in", grant.apps);
        await gone.execute();
      }
      await insertAudit(trx, {
        actor: by,
        action: "host.grant",
        app: null,
        env: null,
        target: name,
        details: { host: name, apps: grant.apps, labels: grant.labels },
      });
      return updated;
    });
    if (!row) throw notFound(`agent host '${name}'`, { host: name });
    return this.withApps(row);
  }

  /**
   * Records a connected host as seen. Only this owner's connection counts: a
   * newer one held by another server is left alone. On SQLite in the turn's
   * group commit (a flush of its own was most of its cost); on PostgreSQL
   * the marks of up to SEEN_LINGER_MS go in one statement (with a thousand
   * agents, one a second per server instead of one per heartbeat due, some
   * seventy a second: most of an idle fleet's statements).
   */
  markSeen(hostId: number, owner: string, at: string = nowIso()): Promise<void> {
    const mark = { hostId, owner, at };
    if (this.caps.arrayParameters) return this.seenMarks.add(mark);
    const write = (db: Kysely<Schema>) => writeSeen(db, [mark], false);
    return this.group ? this.group.run(write) : write(this.db);
  }

  private readonly seenMarks = new WriteBatcher<SeenMark>((marks) => writeSeen(this.db, marks, true), {
    lingerMs: SEEN_LINGER_MS,
  });

  async markDisconnected(hostId: number, owner: string, lastSeenAt: string): Promise<void> {
    await this.db
      .updateTable("hosts")
      .set({ connected: 0, last_seen_at: lastSeenAt })
      .where("id", "=", hostId)
      .where("connected_to", "=", owner)
      .execute();
  }

  /**
   * Hosts still marked connected to a server process that is gone (a crash
   * leaves them so): marked disconnected. Returns their names.
   */
  async releaseOrphans(isDead: (owner: string) => boolean): Promise<string[]> {
    const rows = await this.db
      .selectFrom("hosts")
      .select(["id", "name", "connected_to"])
      .where("connected", "=", 1)
      .execute();
    const orphans = rows.filter((r) => r.connected_to === null || isDead(r.connected_to));
    for (const row of orphans) {
      await this.db
        .updateTable("hosts")
        .set({ connected: 0 })
        .where("id", "=", row.id)
        .where("connected", "=", 1)
        .execute();
    }
    return orphans.map((r) => r.name);
  }

  /** Replaces what a host holds with what it just reported (apps it no longer has are dropped). */
  /**
   * Replaces what the host reports holding; with `seen`, also records it as
   * seen, in the same transaction (one commit per heartbeat, not two).
   */
  async saveInventory(
    hostId: number,
    inventory: HostAppInventory[],
    seen?: { owner: string; at: string },
  ): Promise<void> {
    const now = nowIso();
    await this.db.transaction().execute(async (trx) => {
      if (seen) {
        await trx
          .updateTable("hosts")
          .set({ last_seen_at: seen.at, connected: 1 })
          .where("id", "=", hostId)
          .where("connected_to", "=", seen.owner)
          .execute();
      }
      await trx.deleteFrom("host_apps").where("host_id", "=", hostId).execute();
      if (inventory.length === 0) return;
      await trx
        .insertInto("host_apps")
        .values(inventory.map((item) => hostAppRow(hostId, item, now)))
        .execute();
    });
  }

  /**
   * What an SSH host holds, read by the server when it last talked to it (a
   * deploy): replaces its inventory and sets `last_seen_at`, which for SSH
   * hosts says the inventory is a reading, not nothing known.
   */
  /**
   * What changed in a connected agent's inventory since the agent hub last
   * saved it: apps whose record changed are upserted, apps gone are removed,
   * and `seen` (when given) refreshes the host's last-seen. Changes asked for
   * in the same turn of the event loop, for any hosts, are written in one
   * transaction (group commit, as FleetStore.updateDeployHost): a thousand
   * hosts reporting after a switch were a thousand transactions of three
   * statements each, a flush apiece on SQLite. Each promise settles once its
   * change is durable. On SQLite the turn's transaction is the one of every
   * store's writes (GroupCommit: the deploy's step updates too); on
   * PostgreSQL a failed transaction fails every change of its turn.
   */
  saveInventoryChanges(
    hostId: number,
    changes: { changed: HostAppInventory[]; removed: Pick<HostAppInventory, "app" | "path">[] },
    seen?: { owner: string; at: string },
  ): Promise<void> {
    if (this.group) {
      const change = { hostId, ...changes, seen };
      const statements = (seen ? 1 : 0) + changes.removed.length + (changes.changed.length > 0 ? 1 : 0);
      return this.group.run((db) => this.writeInventoryChange(db, change, nowIso()), statements);
    }
    return this.inventoryChanges.add({ hostId, ...changes, seen });
  }

  private readonly inventoryChanges = new WriteBatcher<InventoryChange>(
    (batch) => this.writeInventoryChanges(batch),
    { lingerMs: INVENTORY_LINGER_MS },
  );

  /**
   * PostgreSQL: a group's changes (a turn's, and those asked for while the
   * previous group is written: WriteBatcher) as few statements as they allow, each a
   * round trip — every changed record of every host in one upsert, then the
   * rare removals and last-seen updates; BEGIN and COMMIT only when there is
   * more than that one statement. (A report per host after staging and after
   * switching was BEGIN, upsert, COMMIT: three round trips apiece.)
   */
  private async writeInventoryChanges(batch: InventoryChange[]): Promise<void> {
    const now = nowIso();
    // In the order asked: two changes of one host in a batch end on the later.
    const last = new Map<
      string,
      | { hostId: number; item: HostAppInventory }
      | { hostId: number; gone: Pick<HostAppInventory, "app" | "path"> }
    >();
    for (const change of batch) {
      for (const gone of change.removed)
        last.set(`${change.hostId}\n${gone.app}\n${gone.path ?? ""}`, { hostId: change.hostId, gone });
      for (const item of change.changed)
        last.set(`${change.hostId}\n${item.app}\n${item.path ?? ""}`, { hostId: change.hostId, item });
    }
    const upserts = [...last.values()].flatMap((v) =>
      "item" in v ? [{ hostId: v.hostId, item: v.item }] : [],
    );
    const removals = [...last.values()].flatMap((v) =>
      "gone" in v ? [{ hostId: v.hostId, gone: v.gone }] : [],
    );
    const seen = batch.filter((c) => c.seen);
    const write = async (db: Kysely<Schema>) => {
      if (upserts.length > 0) await this.upsertApps(db, upserts, now);
      for (const { hostId, gone } of removals) {
        await db
          .deleteFrom("host_apps")
          .where("host_id", "=", hostId)
          .where("app", "=", gone.app)
          .where("path", "=", gone.path ?? "")
          .execute();
      }
      if (seen.length > 0)
        await writeSeen(
          db,
          seen.map((c) => ({ hostId: c.hostId, ...c.seen! })),
          this.caps.arrayParameters,
        );
    };
    const statements = (upserts.length > 0 ? 1 : 0) + removals.length + (seen.length > 0 ? 1 : 0);
    if (statements <= 1) await write(this.db);
    else await this.db.transaction().execute(write);
  }

  private async writeInventoryChange(
    db: Kysely<Schema>,
    change: InventoryChange,
    now: string,
  ): Promise<void> {
    if (change.seen) {
      await db
        .updateTable("hosts")
        .set({ last_seen_at: change.seen.at, connected: 1 })
        .where("id", "=", change.hostId)
        .where("connected_to", "=", change.seen.owner)
        .execute();
    }
    // Rare (an app or a deploy path gone from a host): one statement each.
    for (const gone of change.removed) {
      await db
        .deleteFrom("host_apps")
        .where("host_id", "=", change.hostId)
        .where("app", "=", gone.app)
        .where("path", "=", gone.path ?? "")
        .execute();
    }
    if (change.changed.length === 0) return;
    await this.upsertApps(
      db,
      change.changed.map((item) => ({ hostId: change.hostId, item })),
      now,
    );
  }

  /**
   * Hosts' app records, inserted or replaced, in one statement (at most one
   * row per host, app and path). With array parameters (PostgreSQL) the rows
   * are columns of `unnest`: one text whatever the number of rows, where a
   * multi-row VALUES list was a new text (and a query builder's tree of every
   * value) per group size, a third of a fleet deploy's query building.
   */
  private async upsertApps(
    db: Kysely<Schema>,
    rows: { hostId: number; item: HostAppInventory }[],
    now: string,
  ) {
    if (this.caps.arrayParameters) {
      const values = rows.map(({ hostId, item }) => hostAppRow(hostId, item, now));
      const column = <K extends keyof (typeof values)[number]>(key: K) => values.map((v) => v[key]);
      await sql`
        INSERT INTO host_apps (host_id, app, path, current_release, slots, releases, updated_at)
        SELECT * FROM unnest(${column("host_id")}::int[], ${column("app")}::text[], ${column("path")}::text[],
                             ${column("current_release")}::text[], ${column("slots")}::text[],
                             ${column("releases")}::text[], ${column("updated_at")}::text[])
        ON CONFLICT (host_id, app, path) DO UPDATE SET
          current_release = excluded.current_release, slots = excluded.slots,
          releases = excluded.releases, updated_at = excluded.updated_at`.execute(db);
      return;
    }
    await db
      .insertInto("host_apps")
      .values(rows.map(({ hostId, item }) => hostAppRow(hostId, item, now)))
      .onConflict((oc) =>
        oc.columns(["host_id", "app", "path"]).doUpdateSet((eb) => ({
          current_release: eb.ref("excluded.current_release"),
          slots: eb.ref("excluded.slots"),
          releases: eb.ref("excluded.releases"),
          updated_at: eb.ref("excluded.updated_at"),
        })),
      )
      .execute();
  }

  async saveSshInventory(
    hostId: number,
    inventory: HostAppInventory[],
    at: string = nowIso(),
  ): Promise<void> {
    await this.saveInventory(hostId, inventory);
    await this.db
      .updateTable("hosts")
      .set({ last_seen_at: at })
      .where("id", "=", hostId)
      .where("kind", "=", "ssh")
      .execute();
  }

  private async withApps(row: Selectable<HostsTable>): Promise<HostRecord> {
    const apps = await this.db
      .selectFrom("host_apps")
      .selectAll()
      .where("host_id", "=", row.id)
      .orderBy("app")
      .execute();
    return toRecord(row, apps.map(toInventory), await this.depooledApps(row.id));
  }
}

function grantOf(row: Pick<Selectable<HostsTable>, "grant_apps" | "grant_labels">): HostGrant {
  return {
    apps: fromJson<string[] | null>(row.grant_apps),
    labels: fromJson<string[] | null>(row.grant_labels),
  };
}

function grantColumns(grant: HostGrant): { grant_apps: string | null; grant_labels: string | null } {
  return {
    grant_apps: grant.apps === null ? null : toJson(grant.apps),
    grant_labels: grant.labels === null ? null : toJson(grant.labels),
  };
}

/**
 * The one place a host's labels are read from the database: what counts is
 * what its grant allows, so nothing that selects hosts can use the rest.
 */
function toRecord(row: Selectable<HostsTable>, apps: HostAppInventory[], depooled: string[]): HostRecord {
  const declared = fromJson<Record<string, string>>(row.labels) ?? {};
  const grant = grantOf(row);
  // SSH hosts come from manifests, written by the server's admins: their labels are decided already.
  const { granted, ungranted } =
    row.kind === "agent" ? applyGrant(declared, grant) : { granted: declared, ungranted: {} };
  return {
    id: row.id,
    name: row.name,
    kind: row.kind as HostKind,
    labels: granted,
    ungrantedLabels: ungranted,
    grant: row.kind === "agent" ? grant : { apps: row.app === null ? null : [row.app], labels: null },
    app: row.kind === "ssh" ? row.app : null,
    address: row.address,
    poolState: depooled.length > 0 ? "depooled" : "pooled",
    depooledApps: depooled,
    connected: row.connected === 1,
    lastSeenAt: row.last_seen_at,
    tokenLastUsedAt: row.token_last_used_at,
    connectedTo: row.connected_to,
    apps,
  };
}

function toInventory(row: Selectable<HostAppsTable>): HostAppInventory {
  return {
    app: row.app,
    ...(row.path ? { path: row.path } : {}),
    current: row.current_release,
    slots: fromJson<Record<string, string>>(row.slots) ?? {},
    releases: fromJson<string[]>(row.releases) ?? [],
  };
}

/** One layout of an app on a host, as `host_apps` keeps it (no deploy path: the empty string). */
function hostAppRow(hostId: number, item: HostAppInventory, now: string) {
  return {
    host_id: hostId,
    app: item.app,
    path: item.path ?? "",
    current_release: item.current,
    slots: toJson(item.slots),
    releases: toJson(item.releases),
    updated_at: now,
  };
}

/** A host's last message time, written by the server holding its connection. */
interface SeenMark {
  hostId: number;
  owner: string;
  at: string;
}

/**
 * How long an inventory report waits for others on PostgreSQL. Nothing
 * waits on it (the agent hub saves it in the background), and the hosts of
 * a fleet batch report as each finishes staging or switching, spread over
 * that step: a report apiece was a statement apiece.
 */
const INVENTORY_LINGER_MS = 100;

/** How long a last-seen mark waits for others on PostgreSQL (they are written at most every 15 s per host). */
const SEEN_LINGER_MS = 1000;

/**
 * Last-seen marks: with array parameters (PostgreSQL) all in one statement,
 * else one per host. A mark counts only where its owner still holds the
 * host's connection; of two marks of one host, the later time wins.
 */
async function writeSeen(db: Kysely<Schema>, marks: SeenMark[], arrays: boolean): Promise<void> {
  if (!arrays) {
    for (const mark of marks) {
      await db
        .updateTable("hosts")
        .set({ last_seen_at: mark.at, connected: 1 })
        .where("id", "=", mark.hostId)
        .where("connected_to", "=", mark.owner)
        .execute();
    }
    return;
  }
  const latest = new Map<string, SeenMark>();
  for (const mark of marks) {
    const key = `${mark.hostId}\n${mark.owner}`;
    const known = latest.get(key);
    if (!known || known.at < mark.at) latest.set(key, mark);
  }
  const rows = [...latest.values()];
  await sql`
    UPDATE hosts AS h SET last_seen_at = v.at, connected = 1
    FROM unnest(${rows.map((r) => r.hostId)}::int[], ${rows.map((r) => r.owner)}::text[], ${rows.map((r) => r.at)}::text[])
      AS v(id, owner, at)
    WHERE h.id = v.id AND h.connected_to = v.owner`.execute(db);
}
