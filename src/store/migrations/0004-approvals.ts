import type { Kysely } from "kysely";
import type { Capabilities } from "../capabilities.js";

/** A fleet deploy may wait for a person after its canary: requested → approved | aborted, with who answered. */
export async function up(db: Kysely<unknown>, _caps: Capabilities): Promise<void> {
  await db.schema.alterTable("deploys").addColumn("approval", "text").execute();
  await db.schema.alterTable("deploys").addColumn("approval_by", "text").execute();
}
