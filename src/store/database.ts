import { mkdirSync } from "node:fs";
import path from "node:path";
import SqliteDatabase from "better-sqlite3";
import {
  Kysely,
  type Migration as KyselyMigration,
  type LogEvent,
  Migrator,
  SqliteDialect,
  sql,
} from "kysely";
import { TurnoutError } from "../domain/errors.js";
import { type Capabilities, POSTGRES, SQLITE } from "./capabilities.js";
import { MIGRATIONS } from "./migrations/index.js";
import { OwnSchemaPostgresDialect } from "./own-schema-dialect.js";
import type { Schema } from "./schema.js";
import { withStatementCache } from "./statement-cache.js";
import { StatementKinds } from "./statement-kinds.js";

export interface Database {
  db: Kysely<Schema>;
  caps: Capabilities;
  /** Statements sent to the database by this process so far, BEGIN and COMMIT included (see countQueries). */
  queries(): number;
  /** The same statements by kind (statementKind): where they go. */
  queriesByKind(): ReadonlyMap<string, number>;
  close(): Promise<void>;
}

/**
 * Counts every statement Kysely executes, transaction BEGIN/COMMIT included
 * (Kysely runs those through the same connection): the database round-trips
 * of this process, served as turnout_database_queries_total. It costs one
 * call per statement, nothing per row.
 */
function countQueries(): {
  log: (event: LogEvent) => void;
  queries: () => number;
  queriesByKind: () => ReadonlyMap<string, number>;
} {
  let count = 0;
  const kinds = new StatementKinds();
  return {
    log: (event) => {
      count++;
      kinds.count(event.query.sql);
    },
    queries: () => count,
    queriesByKind: () => kinds.snapshot(),
  };
}

export interface DatabaseOptions {
  /** postgres://… ; undefined for SQLite at `sqliteFile`. */
  url?: string | undefined;
  sqliteFile?: string;
}

export async function openDatabase(options: DatabaseOptions): Promise<Database> {
  const database = options.url ? await openPostgres(options.url) : openSqlite(options.sqliteFile);
  try {
    await migrate(database);
  } catch (error) {
    await database.close();
    throw error;
  }
  return database;
}

function openSqlite(file: string | undefined): Database {
  if (!file) throw new TurnoutError("E_CONFIG", "no SQLite file given");
  mkdirSync(path.dirname(file), { recursive: true });
  const sqlite = new SqliteDatabase(file);
  // WAL lets readers (log tails, status pages) run while a deploy writes;
  // synchronous=FULL makes every acknowledged write survive a machine crash.
  sqlite.pragma("journal_mode = WAL");
  sqlite.pragma("synchronous = FULL");
  sqlite.pragma("busy_timeout = 5000");
  sqlite.pragma("foreign_keys = ON");
  const { log, ...counted } = countQueries();
  const db = new Kysely<Schema>({
    dialect: new SqliteDialect({ database: withStatementCache(sqlite) }),
    log,
  });
  return { db, caps: SQLITE, ...counted, close: () => db.destroy() };
}

// The PostgreSQL driver is loaded only for a PostgreSQL URL: a default server
// (SQLite) would otherwise pay some 14 MB and 100 ms of start-up for it.
async function openPostgres(url: string): Promise<Database> {
  const { default: pg } = await import("pg");
  const pool = new pg.Pool({ connectionString: url, max: 10 });
  const { log, ...counted } = countQueries();
  const db = new Kysely<Schema>({ dialect: new OwnSchemaPostgresDialect({ pool }), log });
  return { db, caps: POSTGRES, ...counted, close: () => db.destroy() };
}

async function migrate({ db, caps }: Database): Promise<void> {
  const migrations: Record<string, KyselyMigration> = {};
  for (const [name, migration] of Object.entries(MIGRATIONS)) {
    migrations[name] = { up: (k) => migration.up(k, caps) };
  }
  // Kysely looks for its bookkeeping tables by name across all schemas; pin
  // them to ours, or a database with several Turnout schemas confuses it.
  const schema =
    caps.dialect === "postgres"
      ? (await sql<{ schema: string }>`select current_schema() as schema`.execute(db)).rows[0]?.schema
      : undefined;
  const migrator = new Migrator({
    db,
    provider: { getMigrations: async () => migrations },
    migrationTableName: "turnout_migrations",
    migrationLockTableName: "turnout_migrations_lock",
    ...(schema ? { migrationTableSchema: schema } : {}),
  });
  const { error, results } = await migrator.migrateToLatest();
  if (error) {
    const failed = results?.find((r) => r.status === "Error")?.migrationName ?? "unknown";
    throw new TurnoutError("E_INTERNAL", `database migration ${failed} failed: ${(error as Error).message}`);
  }
}
