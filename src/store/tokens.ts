import { createHash, randomBytes } from "node:crypto";
import type { Kysely } from "kysely";
import type { AuditActor } from "../domain/audit.js";
import { notFound, TurnoutError } from "../domain/errors.js";
import { isUnrestricted } from "../domain/host-grant.js";
import type { Principal, Role } from "../domain/roles.js";
import { actorName, insertAudit } from "./audit.js";
import type { Capabilities } from "./capabilities.js";
import { fromJson, nowIso, toJson } from "./rows.js";
import type { Schema } from "./schema.js";
import { TokenUsage } from "./token-usage.js";

export interface TokenInfo {
  id: number;
  name: string;
  role: Role;
  apps: string[] | null;
  /**
   * Agent tokens only: the `key=value` labels hosts enrolled with it are
   * granted (null: whatever they declare, as every agent token from before
   * grants existed).
   */
  labels?: string[] | null;
  /** Agent tokens only: hosts enrolled with it choose their own labels (labels null). */
  unrestricted?: boolean;
  createdAt: string;
  createdBy: string;
  lastUsedAt: string | null;
  revokedAt: string | null;
  /** Short-lived tokens (browser sign-ins) stop working then; null: never. */
  expiresAt: string | null;
}

/**
 * API tokens. Only a sha256 of each token is stored: the token itself is shown
 * once, when created. (A fast hash is right here: tokens are 256 random bits,
 * not passwords, so there is nothing to brute-force.)
 */
/**
 * Successful look-ups are remembered for a second: every API request
 * authenticates, and the read endpoints must serve thousands a second. A
 * revocation in this process takes effect at once (it clears the memory); in
 * another server process sharing the database, within that second.
 */
const AUTH_CACHE_MS = 1000;
const AUTH_CACHE_SIZE = 1000;

export class TokenStore {
  private readonly recent = new Map<string, { principal: Principal; until: number }>();

  constructor(
    private readonly db: Kysely<Schema>,
    private readonly caps: Capabilities,
    private readonly usage: TokenUsage = new TokenUsage(),
  ) {}

  async create(input: {
    name: string;
    role: Role;
    apps: string[] | null;
    /** Agent tokens: the labels they grant (null: any declared); ignored for other roles. */
    labels?: string[] | null;
    /** Who creates it: their name is kept as created_by, and the whole actor goes to the audit trail. */
    createdBy: AuditActor | string;
    /** When the token stops working by itself (default: never). */
    expiresAt?: string | null;
  }): Promise<{ token: string; info: TokenInfo }> {
    const labels = input.role === "agent" ? (input.labels === undefined ? [] : input.labels) : null;
    const token = `tnt_${randomBytes(32).toString("base64url")}`;
    const now = nowIso();
    try {
      const row = await this.db.transaction().execute(async (trx) => {
        const inserted = await trx
          .insertInto("tokens")
          .values({
            name: input.name,
            hash: hashToken(token),
            role: input.role,
            apps: input.apps === null ? null : toJson(input.apps),
            labels: labels === null ? null : toJson(labels),
            created_at: now,
            created_by: actorName(input.createdBy),
            expires_at: input.expiresAt ?? null,
          })
          .returningAll()
          .executeTakeFirstOrThrow();
        // The token's value never goes here: its name, id and grants do.
        await insertAudit(
          trx,
          {
            actor: input.createdBy,
            action: "token.create",
            app: null,
            env: null,
            target: input.name,
            details: {
              name: input.name,
              id: inserted.id,
              role: input.role,
              apps: input.apps,
              ...(input.role === "agent" ? { labels } : {}),
              ...(input.expiresAt ? { expiresAt: input.expiresAt } : {}),
            },
          },
          now,
        );
        return inserted;
      });
      return { token, info: toInfo(row) };
    } catch (error) {
      if (this.caps.isUniqueViolation(error)) {
        throw new TurnoutError("E_CONFLICT", `a token named '${input.name}' already exists`, {
          name: input.name,
        });
      }
      throw error;
    }
  }

  async authenticate(token: string): Promise<Principal | undefined> {
    const hash = hashToken(token);
    const remembered = this.recent.get(hash);
    if (remembered && remembered.until > Date.now()) {
      await this.used(remembered.principal.tokenId);
      return remembered.principal;
    }
    const now = nowIso();
    const row = await this.db
      .selectFrom("tokens")
      .selectAll()
      .where("hash", "=", hash)
      .where("revoked_at", "is", null)
      .where((eb) => eb.or([eb("expires_at", "is", null), eb("expires_at", ">", now)]))
      .executeTakeFirst();
    if (!row) {
      this.recent.delete(hash);
      return undefined;
    }
    const principal: Principal = {
      tokenId: row.id,
      name: row.name,
      role: row.role as Role,
      apps: fromJson(row.apps),
      ...(row.role === "agent" ? { labels: fromJson<string[] | null>(row.labels) } : {}),
      expiresAt: row.expires_at,
    };
    if (this.recent.size >= AUTH_CACHE_SIZE) this.recent.clear();
    // An expiring token is never remembered past its end.
    const until = Math.min(
      Date.now() + AUTH_CACHE_MS,
      row.expires_at ? Date.parse(row.expires_at) : Number.POSITIVE_INFINITY,
    );
    this.recent.set(hash, { principal, until });
    await this.used(principal.tokenId);
    return principal;
  }

  /** Records a use (throttled, see token-usage.ts); a failed write never refuses a valid token. */
  private async used(id: number): Promise<void> {
    await this.usage.record(`token:${id}`, (now, staleBefore) =>
      this.db
        .updateTable("tokens")
        .set({ last_used_at: now })
        .where("id", "=", id)
        .where((eb) => eb.or([eb("last_used_at", "is", null), eb("last_used_at", "<", staleBefore)]))
        .execute(),
    );
  }

  async count(): Promise<number> {
    const row = await this.db
      .selectFrom("tokens")
      .select(({ fn }) => fn.countAll<number>().as("n"))
      .executeTakeFirstOrThrow();
    return Number(row.n);
  }

  async list(): Promise<TokenInfo[]> {
    return (await this.db.selectFrom("tokens").selectAll().orderBy("id").execute()).map(toInfo);
  }

  async revoke(name: string, by: AuditActor | string): Promise<void> {
    // The revocation and its record in one transaction: neither without the other.
    const revoked = await this.db.transaction().execute(async (trx) => {
      const row = await trx
        .updateTable("tokens")
        .set({ revoked_at: nowIso() })
        .where("name", "=", name)
        .where("revoked_at", "is", null)
        .returning(["id"])
        .executeTakeFirst();
      if (!row) return false;
      await insertAudit(trx, {
        actor: by,
        action: "token.revoke",
        app: null,
        env: null,
        target: name,
        details: { name, id: row.id },
      });
      return true;
    });
    this.recent.clear();
    if (!revoked) throw notFound(`token '${name}'`);
  }
}

export function hashToken(token: string): string {
  return createHash("sha256").update(token).digest("hex");
}

function toInfo(row: {
  id: number;
  name: string;
  role: string;
  apps: string | null;
  labels: string | null;
  created_at: string;
  created_by: string;
  last_used_at: string | null;
  revoked_at: string | null;
  expires_at: string | null;
}): TokenInfo {
  const apps = fromJson<string[] | null>(row.apps);
  const labels = fromJson<string[] | null>(row.labels);
  return {
    id: row.id,
    name: row.name,
    role: row.role as Role,
    apps,
    ...(row.role === "agent" ? { labels, unrestricted: isUnrestricted({ apps, labels }) } : {}),
    createdAt: row.created_at,
    createdBy: row.created_by,
    lastUsedAt: row.last_used_at,
    revokedAt: row.revoked_at,
    expiresAt: row.expires_at,
  };
}
