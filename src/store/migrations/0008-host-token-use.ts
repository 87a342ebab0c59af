import type { Kysely } from "kysely";
import type { Capabilities } from "../capabilities.js";

/** When each host's token was last used (API tokens have tokens.last_used_at since 0001). */
export async function up(db: Kysely<unknown>, _caps: Capabilities): Promise<void> {
  await db.schema.alterTable("hosts").addColumn("token_last_used_at", "text").execute();
}
