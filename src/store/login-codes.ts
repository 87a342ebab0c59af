import { randomBytes } from "node:crypto";
import type { Kysely } from "kysely";
import { TurnoutError } from "../domain/errors.js";
import type { Principal, Role } from "../domain/roles.js";
import { fromJson, isoIn, nowIso, toJson } from "./rows.js";
import type { Schema } from "./schema.js";
import { hashToken, type TokenInfo, type TokenStore } from "./tokens.js";

/**
 * One-time sign-in codes for the browser (`turnout ui`): an admin's client
 * asks for a code, the browser exchanges it once, within its short life,
 * for a fresh token of the same role and apps that expires on its own. Only
 * a hash of each code is stored, as for tokens; an exchange deletes the row
 * in the same statement that finds it, so a code works once even when two
 * server processes race for it.
 */
export interface IssuedCode {
  code: string;
  expiresAt: string;
}

export class LoginCodeStore {
  constructor(
    private readonly db: Kysely<Schema>,
    private readonly tokens: TokenStore,
  ) {}

  async issue(principal: Principal, lifeMs: number): Promise<IssuedCode> {
    const code = randomBytes(24).toString("base64url");
    const expiresAt = isoIn(lifeMs);
    await this.db
      // Expired codes are dropped whenever a new one is made: the table stays tiny.
      .deleteFrom("login_codes")
      .where("expires_at", "<", nowIso())
      .execute();
    await this.db
      .insertInto("login_codes")
      .values({
        code_hash: hashToken(code),
        token_id: principal.tokenId,
        created_by: principal.name,
        role: principal.role,
        apps: principal.apps === null ? null : toJson(principal.apps),
        created_at: nowIso(),
        expires_at: expiresAt,
      })
      .execute();
    return { code, expiresAt };
  }

  /**
   * Exchanges a code for a new token living `tokenLifeMs`. An unknown, used
   * or expired code, or one whose creator's token was revoked since, is
   * E_UNAUTHORIZED with the same message: the caller learns nothing more.
   */
  async redeem(code: string, tokenLifeMs: number): Promise<{ token: string; info: TokenInfo }> {
    const refused = new TurnoutError(
      "E_UNAUTHORIZED",
      "this sign-in code is invalid, used or expired: run `turnout ui` again for a new one",
    );
    if (!/^[A-Za-z0-9_-]{16,64}$/.test(code)) throw refused;
    const row = await this.db
      .deleteFrom("login_codes")
      .where("code_hash", "=", hashToken(code))
      .returningAll()
      .executeTakeFirst();
    if (!row || row.expires_at <= nowIso()) throw refused;
    const creator = await this.db
      .selectFrom("tokens")
      .select(["id"])
      .where("id", "=", row.token_id)
      .where("revoked_at", "is", null)
      .where((eb) => eb.or([eb("expires_at", "is", null), eb("expires_at", ">", nowIso())]))
      .executeTakeFirst();
    if (!creator) throw refused;
    const prefix = `ui-${row.created_by}`.slice(0, 50).replace(/-+$/, "");
    return this.tokens.create({
      name: `${prefix}-${randomBytes(4).toString("hex")}`,
      role: row.role as Role,
      apps: fromJson<string[] | null>(row.apps),
      createdBy: row.created_by,
      expiresAt: isoIn(tokenLifeMs),
    });
  }
}
