import { randomBytes } from "node:crypto";
import pg from "pg";
import { describe, expect, it } from "vitest";
import { Store } from "../../src/store/store.js";
import { POSTGRES_URL } from "../helpers/databases.js";

/**
 * Several Turnouts (or test runs) may share one PostgreSQL database, each in
 * its own schema. Kysely's migrator lists the tables of every schema before
 * it migrates; a schema another user drops during that listing must not fail
 * this one's start.
 */
describe("migrating on PostgreSQL beside schemas that come and go", () => {
  it("opens its store while other schemas are dropped", async () => {
    const admin = new pg.Client({ connectionString: POSTGRES_URL });
    await admin.connect();
    const prefix = `tmp_${randomBytes(4).toString("hex")}`;
    const others = Array.from({ length: 40 }, (_, i) => `${prefix}_${i}`);
    const ours: string[] = [];
    try {
      for (let round = 0; round < 4; round++) {
        for (const name of others) {
          await admin.query(`create schema ${name}`);
          await admin.query(`create table ${name}.t (id int)`);
        }
        const schema = `${prefix}_mine_${round}`;
        ours.push(schema);
        await admin.query(`create schema ${schema}`);
        const url = `${POSTGRES_URL}?options=${encodeURIComponent(`-c search_path=${schema}`)}`;
        // Drop the others one at a time, each in its own statement, while the store migrates.
        const dropper = new pg.Client({ connectionString: POSTGRES_URL });
        await dropper.connect();
        const dropping = (async () => {
          for (const name of others) await dropper.query(`drop schema ${name} cascade`);
        })();
        const opened = Store.open({ url });
        const [store] = await Promise.all([opened, dropping]);
        await dropper.end();
        expect(await store.deploys.list({ limit: 1 })).toEqual([]);
        await store.close();
      }
    } finally {
      for (const name of [...others, ...ours]) await admin.query(`drop schema if exists ${name} cascade`);
      await admin.end();
    }
  });
});
