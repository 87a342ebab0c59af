import type { Kysely, Selectable } from "kysely";
import { TurnoutError } from "../domain/errors.js";
import type { HostAppInventory, HostKind, HostWithApps, PoolState } from "../domain/fleet.js";
import type { Principal } from "../domain/roles.js";
import type { Capabilities } from "./capabilities.js";
import { fromJson, nowIso, toJson } from "./rows.js";
import type { HostAppsTable, HostsTable, Schema } from "./schema.js";
import { TokenUsage } from "./token-usage.js";
import { hashToken } from "./tokens.js";

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
export class HostStore {
  constructor(
    private readonly db: Kysely<Schema>,
    private readonly caps: Capabilities,
    private readonly usage: TokenUsage = new TokenUsage(),
  ) {}

  async list(): Promise<HostRecord[]> {
    const [hosts, apps] = await Promise.all([
      this.db.selectFrom("hosts").selectAll().orderBy("name").execute(),
      this.db.selectFrom("host_apps").selectAll().orderBy("app").execute(),
    ]);
    const byHost = new Map<number, HostAppInventory[]>();
    for (const row of apps) {
      const list = byHost.get(row.host_id) ?? [];
      list.push(toInventory(row));
      byHost.set(row.host_id, list);
    }
    return hosts.map((row) => toRecord(row, byHost.get(row.id) ?? []));
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
    return toRecord(row, apps.map(toInventory));
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
    return toRecord(row, []);
  }

  /** See token-usage.ts; a failed write never refuses a valid token. */
  private async tokenUsed(id: number): Promise<void> {
    const key = `host:${id}`;
    if (!this.usage.due(key)) return;
    try {
      await this.db
        .updateTable("hosts")
        .set({ token_last_used_at: this.usage.nowIso() })
        .where("id", "=", id)
        .where((eb) =>
          eb.or([
            eb("token_last_used_at", "is", null),
            eb("token_last_used_at", "<", this.usage.staleBefore()),
          ]),
        )
        .execute();
    } catch {
      this.usage.failed(key);
    }
  }

  /**
   * A host token as an API principal with the `agent` role only (what an
   * enrollment token may do: download blobs), for the bearer authenticator.
   */
  async authenticate(token: string): Promise<Principal | undefined> {
    const host = await this.findByToken(token);
    return host ? { tokenId: -host.id, name: `host:${host.name}`, role: "agent", apps: null } : undefined;
  }

  /**
   * An agent said hello: creates its host (pooled) or updates the labels of
   * the existing one, and records it as connected to `owner`. `tokenHash`
   * replaces the stored host token when given (a fresh enrollment).
   */
  async enrollAgent(input: {
    name: string;
    labels: Record<string, string>;
    owner: string;
    tokenHash: string | null;
  }): Promise<HostRecord> {
    const now = nowIso();
    const update = {
      labels: toJson(input.labels),
      connected: 1,
      connected_to: input.owner,
      last_seen_at: now,
      // A new host token has not been used yet.
      ...(input.tokenHash !== null ? { token_hash: input.tokenHash, token_last_used_at: null } : {}),
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
        const row = await this.db
          .updateTable("hosts")
          .set(update)
          .where("id", "=", existing.id)
          .returningAll()
          .executeTakeFirstOrThrow();
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
            ...update,
          })
          .returningAll()
          .executeTakeFirstOrThrow();
        return toRecord(row, []);
      } catch (error) {
        // Another server enrolled the same name at the same moment: update theirs.
        if (attempt === 0 && this.caps.isUniqueViolation(error)) continue;
        throw error;
      }
    }
  }

  /** Only this owner's connection counts: a newer one held by another server is left alone. */
  async markSeen(hostId: number, owner: string, at: string = nowIso()): Promise<void> {
    await this.db
      .updateTable("hosts")
      .set({ last_seen_at: at, connected: 1 })
      .where("id", "=", hostId)
      .where("connected_to", "=", owner)
      .execute();
  }

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
        .values(
          inventory.map((item) => ({
            host_id: hostId,
            app: item.app,
            current_release: item.current,
            slots: toJson(item.slots),
            releases: toJson(item.releases),
            updated_at: now,
          })),
        )
        .execute();
    });
  }

  private async withApps(row: Selectable<HostsTable>): Promise<HostRecord> {
    const apps = await this.db
      .selectFrom("host_apps")
      .selectAll()
      .where("host_id", "=", row.id)
      .orderBy("app")
      .execute();
    return toRecord(row, apps.map(toInventory));
  }
}

function toRecord(row: Selectable<HostsTable>, apps: HostAppInventory[]): HostRecord {
  return {
    id: row.id,
    name: row.name,
    kind: row.kind as HostKind,
    labels: fromJson<Record<string, string>>(row.labels) ?? {},
    address: row.address,
    poolState: row.pool_state as PoolState,
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
    current: row.current_release,
    slots: fromJson<Record<string, string>>(row.slots) ?? {},
    releases: fromJson<string[]>(row.releases) ?? [],
  };
}
