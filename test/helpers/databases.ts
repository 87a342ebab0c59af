import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import pg from "pg";
import { afterEach, beforeEach } from "vitest";
import { Store } from "../../src/store/store.js";

/**
 * The store suite runs against both backends. PostgreSQL is the machine's
 * (127.0.0.1:5432, trust auth, database `test`); each store gets a schema of
 * its own so tests never see each other's rows.
 */
export const POSTGRES_URL = process.env["TURNOUT_TEST_PG_URL"] ?? "postgres://postgres@127.0.0.1:5432/test";

export interface TestDatabase {
  /** What to pass as TURNOUT_DATABASE_URL (undefined for SQLite). */
  url: string | undefined;
  sqliteFile: string | undefined;
  open(): Promise<Store>;
  drop(): Promise<void>;
}

export const BACKENDS = ["sqlite", "postgres"] as const;
export type Backend = (typeof BACKENDS)[number];

export async function createTestDatabase(backend: Backend): Promise<TestDatabase> {
  if (backend === "sqlite") {
    const dir = mkdtempSync(path.join(tmpdir(), "turnout-db-"));
    const file = path.join(dir, "turnout.db");
    return {
      url: undefined,
      sqliteFile: file,
      open: () => Store.open({ sqliteFile: file }),
      drop: async () => rmSync(dir, { recursive: true, force: true }),
    };
  }
  const schema = `t_${randomBytes(6).toString("hex")}`;
  const admin = new pg.Client({ connectionString: POSTGRES_URL });
  await admin.connect();
  await admin.query(`create schema ${schema}`);
  await admin.end();
  const url = `${POSTGRES_URL}?options=${encodeURIComponent(`-c search_path=${schema}`)}`;
  return {
    url,
    sqliteFile: undefined,
    open: () => Store.open({ url }),
    drop: async () => {
      const client = new pg.Client({ connectionString: POSTGRES_URL });
      await client.connect();
      await client.query(`drop schema if exists ${schema} cascade`);
      await client.end();
    },
  };
}

/**
 * A fresh store per test on `backend` (SQLite file or PostgreSQL schema),
 * closed and dropped after it: call inside a describe, read it in tests.
 */
export function useTestStore(backend: Backend): () => Store {
  let database: TestDatabase | undefined;
  let store: Store | undefined;
  beforeEach(async () => {
    database = await createTestDatabase(backend);
    store = await database.open();
  });
  afterEach(async () => {
    await store?.close();
    await database?.drop();
  });
  return () => store!;
}
