import Database from "better-sqlite3";
import { Kysely, Migrator, PostgresDialect, SqliteDialect, sql } from "kysely";
import pg from "pg";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { POSTGRES, SQLITE } from "../../src/store/capabilities.js";
import { MIGRATIONS } from "../../src/store/migrations/index.js";
import type { Store } from "../../src/store/store.js";
import {
  BACKENDS,
  type Backend,
  createTestDatabase,
  type TestDatabase,
  useTestStore,
} from "../helpers/databases.js";

/**
 * Pool state is per host and app (issue 15): one app's failed canary takes a
 * shared host out of that app's pool only. Hosts depooled before the change
 * stay depooled for the apps they held then.
 */
describe.each(BACKENDS)("pool state per host and app on %s", (backend) => {
  const current = useTestStore(backend);
  let store: Store;
  beforeEach(() => {
    store = current();
  });

  it("depools a host for one app and leaves it pooled for the others", async () => {
    const host = await store.hosts.enrollAgent({
      name: "web-1",
      labels: { role: "web" },
      owner: "s1",
      tokenHash: null,
      grant: { apps: ["shop", "blog"], labels: ["role=web"] },
    });
    expect(await store.fleet.depooled("shop")).toEqual(new Set());

    await store.fleet.setPoolState(host.id, "shop", "depooled");
    expect(await store.fleet.depooled("shop")).toEqual(new Set([host.id]));
    expect(await store.fleet.depooled("blog")).toEqual(new Set());
    expect(await store.hosts.get("web-1")).toMatchObject({ poolState: "depooled", depooledApps: ["shop"] });
    expect((await store.hosts.list()).find((h) => h.name === "web-1")?.depooledApps).toEqual(["shop"]);

    await store.fleet.setPoolState(host.id, "blog", "depooled");
    await store.fleet.setPoolState(host.id, "shop", "pooled");
    expect(await store.fleet.depooled("shop")).toEqual(new Set());
    expect(await store.hosts.get("web-1")).toMatchObject({ poolState: "depooled", depooledApps: ["blog"] });
    await store.fleet.setPoolState(host.id, "blog", "pooled");
    expect(await store.hosts.get("web-1")).toMatchObject({ poolState: "pooled", depooledApps: [] });
  });

  it("gives an SSH host the pool state of the app that declares it", async () => {
    const { id, poolState } = await store.fleet.ensureSshHost("shop", "db-1", "10.0.0.9", {});
    expect(poolState).toBe("pooled");
    await store.fleet.setPoolState(id, "shop", "depooled");
    expect((await store.fleet.ensureSshHost("shop", "db-1", "10.0.0.9", {})).poolState).toBe("depooled");
  });
});

/** A database migrated up to the last migration before 0017, with hosts depooled the old way. */
async function databaseBeforePoolPerApp(backend: Backend): Promise<TestDatabase> {
  const database = await createTestDatabase(backend);
  const caps = backend === "sqlite" ? SQLITE : POSTGRES;
  const db =
    backend === "sqlite"
      ? new Kysely<any>({ dialect: new SqliteDialect({ database: new Database(database.sqliteFile!) }) })
      : new Kysely<any>({
          dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: database.url }) }),
        });
  try {
    const schema =
      backend === "postgres"
        ? (await sql<{ schema: string }>`select current_schema() as schema`.execute(db)).rows[0]?.schema
        : undefined;
    const before = Object.entries(MIGRATIONS).filter(([name]) => name < "0017");
    const migrator = new Migrator({
      db,
      provider: {
        getMigrations: async () =>
          Object.fromEntries(before.map(([name, m]) => [name, { up: (k: Kysely<any>) => m.up(k, caps) }])),
      },
      migrationTableName: "turnout_migrations",
      migrationLockTableName: "turnout_migrations_lock",
      ...(schema ? { migrationTableSchema: schema } : {}),
    });
    const { error } = await migrator.migrateToLatest();
    if (error) throw error;
    const now = new Date().toISOString();
    const row = (name: string, kind: string, pool: string, app: string | null) => ({
      name,
      kind,
      labels: "{}",
      address: kind === "ssh" ? "10.0.0.1" : null,
      pool_state: pool,
      connected: 0,
      created_at: now,
      app,
    });
    await db
      .insertInto("hosts")
      .values([
        row("old-agent", "agent", "depooled", null),
        row("old-fine", "agent", "pooled", null),
        row("old-ssh", "ssh", "depooled", "shop"),
      ])
      .execute();
    const ids = Object.fromEntries(
      (await db.selectFrom("hosts").select(["id", "name"]).execute()).map((r: any) => [r.name, r.id]),
    );
    const holds = (host: string, app: string) => ({
      host_id: ids[host],
      app,
      current_release: null,
      slots: "{}",
      releases: "[]",
      updated_at: now,
    });
    await db
      .insertInto("host_apps")
      .values([holds("old-agent", "shop"), holds("old-agent", "blog"), holds("old-fine", "shop")])
      .execute();
  } finally {
    await db.destroy();
  }
  return database;
}

describe.each(BACKENDS)("upgrading to pool state per app on %s", (backend) => {
  let database: TestDatabase;
  let store: Store;
  afterEach(async () => {
    await store?.close();
    await database?.drop();
  });

  it("keeps hosts depooled before for the apps they held, and no others", async () => {
    database = await databaseBeforePoolPerApp(backend);
    store = await database.open();
    expect(await store.hosts.get("old-agent")).toMatchObject({
      poolState: "depooled",
      depooledApps: ["blog", "shop"],
    });
    expect(await store.hosts.get("old-fine")).toMatchObject({ poolState: "pooled", depooledApps: [] });
    expect(await store.hosts.get("old-ssh")).toMatchObject({ depooledApps: ["shop"] });
    expect(await store.fleet.depooled("other")).toEqual(new Set());
  });
});
