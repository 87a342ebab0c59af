import Database from "better-sqlite3";
import { Kysely, Migrator, PostgresDialect, SqliteDialect, sql } from "kysely";
import pg from "pg";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { enrollmentGrant, type HostGrant } from "../../src/domain/host-grant.js";
import { POSTGRES, SQLITE } from "../../src/store/capabilities.js";
import { MIGRATIONS } from "../../src/store/migrations/index.js";
import type { Store } from "../../src/store/store.js";
import { hashToken } from "../../src/store/tokens.js";
import {
  BACKENDS,
  type Backend,
  createTestDatabase,
  type TestDatabase,
  useTestStore,
} from "../helpers/databases.js";

/**
 * Grants in the store: what a host may receive is the server's decision
 * (hosts.grant_*), labels outside it do not count, enrollment cannot take a
 * host away from its grant, what was sent to a host is recorded, SSH host
 * rows belong to one app, and rows from before grants stay unrestricted.
 */
const SHOP_WEB: HostGrant = { apps: ["shop"], labels: ["role=web"] };

describe.each(BACKENDS)("host grants on %s", (backend) => {
  const current = useTestStore(backend);
  let store: Store;
  beforeEach(() => {
    store = current();
  });

  const enroll = (name: string, labels: Record<string, string>, grant: HostGrant | null) =>
    store.hosts.enrollAgent({ name, labels, owner: "s1", tokenHash: null, grant });

  it("counts only the labels a host's grant allows, and keeps the others apart", async () => {
    const host = await enroll("web-1", { role: "web", env: "prod", team: "blog" }, SHOP_WEB);
    expect(host).toMatchObject({
      labels: { role: "web" },
      ungrantedLabels: { env: "prod", team: "blog" },
      grant: SHOP_WEB,
    });
    // Several values of one key may be granted; a declared value must be one of them.
    await store.hosts.setGrant(
      "web-1",
      { apps: ["shop"], labels: ["env=prod", "role=db", "role=web"] },
      "admin",
    );
    expect(await store.hosts.get("web-1")).toMatchObject({
      labels: { role: "web", env: "prod" },
      ungrantedLabels: { team: "blog" },
    });
    // A host reconnecting with its own token (grant null) keeps its grant, whatever it declares.
    await enroll("web-1", { role: "db", team: "blog" }, null);
    expect(await store.hosts.get("web-1")).toMatchObject({
      labels: { role: "db" },
      ungrantedLabels: { team: "blog" },
    });
  });

  it("lets an enrollment token take over a host name only when it covers the host's grant", async () => {
    await enroll("web-1", { role: "web" }, SHOP_WEB);
    // A token for another app, or for more labels of the same app, does not cover it.
    for (const grant of <HostGrant[]>[
      { apps: ["blog"], labels: ["role=web"] },
      { apps: ["shop"], labels: ["role=db"] },
      { apps: null, labels: ["role=db"] },
    ]) {
      await expect(enroll("web-1", { role: "web" }, grant)).rejects.toMatchObject({ code: "E_FORBIDDEN" });
    }
    expect((await store.hosts.get("web-1"))?.grant).toEqual(SHOP_WEB);
    // One that grants at least as much does (and the host gets its grant).
    const wider = { apps: ["blog", "shop"], labels: ["role=web", "zone=b"] };
    expect((await enroll("web-1", { role: "web" }, wider)).grant).toEqual(wider);
    // An admin's (unrestricted) covers everything.
    expect((await enroll("web-1", { role: "web" }, { apps: null, labels: null })).grant).toEqual({
      apps: null,
      labels: null,
    });
  });

  it("records what was sent to a host, and forgets an app's artifacts when its grant loses the app", async () => {
    const host = await enroll("web-1", {}, { apps: ["shop", "blog"], labels: [] });
    const other = await enroll("web-2", {}, { apps: ["shop", "blog"], labels: [] });
    const [a, b] = ["a".repeat(64), "b".repeat(64)];
    expect(await store.fleet.wasSent(host.id, a)).toBe(false);
    await store.fleet.sendArtifact([host.id], a, "shop");
    await store.fleet.sendArtifact([host.id, other.id], b, "blog");
    await store.fleet.sendArtifact([host.id], b, "blog"); // again: no error
    expect(await store.fleet.wasSent(host.id, a)).toBe(true);
    expect(await store.fleet.wasSent(other.id, a)).toBe(false);
    await store.hosts.setGrant("web-1", { apps: ["shop"], labels: [] }, "admin");
    expect(await store.fleet.wasSent(host.id, a)).toBe(true);
    expect(await store.fleet.wasSent(host.id, b)).toBe(false);
    expect(await store.fleet.wasSent(other.id, b)).toBe(true);
    await store.hosts.setGrant("web-1", { apps: [], labels: [] }, "admin");
    expect(await store.fleet.wasSent(host.id, a)).toBe(false);
    const [event] = await store.audit.list({ limit: 1 });
    expect(event).toMatchObject({
      actor: "admin",
      action: "host.grant",
      details: { host: "web-1", apps: [] },
    });
    await expect(store.hosts.setGrant("nowhere", { apps: [], labels: [] }, "admin")).rejects.toMatchObject({
      code: "E_NOT_FOUND",
    });
  });

  it("binds an SSH host row to the app whose manifest declares it", async () => {
    const first = await store.fleet.ensureSshHost("shop", "legacy-1", "10.0.0.1", { role: "web" });
    expect(await store.fleet.ensureSshHost("shop", "legacy-1", "10.0.0.1", {})).toEqual(first);
    await expect(store.fleet.ensureSshHost("blog", "legacy-1", "10.0.0.9", {})).rejects.toMatchObject({
      code: "E_CONFLICT",
    });
    await enroll("web-1", {}, SHOP_WEB);
    await expect(store.fleet.ensureSshHost("shop", "web-1", "10.0.0.2", {})).rejects.toMatchObject({
      code: "E_CONFLICT",
    });
    expect(await store.hosts.get("legacy-1")).toMatchObject({
      kind: "ssh",
      app: "shop",
      labels: { role: "web" },
    });
    // And an agent cannot enroll under an SSH host's name.
    await expect(enroll("legacy-1", {}, SHOP_WEB)).rejects.toMatchObject({ code: "E_CONFLICT" });
  });
});

/** The migrations before grants existed, applied to a fresh database, as a server of that version left it. */
async function databaseBeforeGrants(
  backend: Backend,
): Promise<{ database: TestDatabase; close(): Promise<void> }> {
  const database = await createTestDatabase(backend);
  const caps = backend === "sqlite" ? SQLITE : POSTGRES;
  const db =
    backend === "sqlite"
      ? new Kysely<any>({ dialect: new SqliteDialect({ database: new Database(database.sqliteFile!) }) })
      : new Kysely<any>({
          dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: database.url }) }),
        });
  const schema =
    backend === "postgres"
      ? (await sql<{ schema: string }>`select current_schema() as schema`.execute(db)).rows[0]?.schema
      : undefined;
  const before = Object.entries(MIGRATIONS).filter(([name]) => name < "0005");
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
  await db
    .insertInto("tokens")
    .values({
      name: "old-enroll",
      hash: hashToken("tnt_old-enroll"),
      role: "agent",
      apps: null,
      created_at: now,
      created_by: "admin",
    })
    .execute();
  for (const [name, kind] of [
    ["old-web", "agent"],
    ["old-ssh", "ssh"],
  ] as const) {
    await db
      .insertInto("hosts")
      .values({
        name,
        kind,
        labels: JSON.stringify({ role: "web", team: "any" }),
        address: kind === "ssh" ? "10.0.0.1" : null,
        pool_state: "pooled",
        connected: 0,
        created_at: now,
      })
      .execute();
  }
  return { database, close: () => db.destroy() };
}

describe.each(BACKENDS)("upgrading to grants on %s", (backend) => {
  let database: TestDatabase;
  let store: Store;
  afterEach(async () => {
    await store?.close();
    await database?.drop();
  });

  it("keeps hosts and agent tokens from before working, unrestricted and flagged as such", async () => {
    const old = await databaseBeforeGrants(backend);
    database = old.database;
    await old.close();
    store = await database.open();

    const [token] = await store.tokens.list();
    expect(token).toMatchObject({ name: "old-enroll", apps: null, labels: null, unrestricted: true });
    const principal = await store.tokens.authenticate("tnt_old-enroll");
    expect(enrollmentGrant(principal!)).toEqual({ apps: null, labels: null });
    // A token created now grants no labels unless told.
    const fresh = await store.tokens.create({
      name: "new",
      role: "agent",
      apps: ["shop"],
      createdBy: "admin",
    });
    expect(fresh.info).toMatchObject({ labels: [], unrestricted: false });

    // The old host: every label it declared still counts, for every app.
    expect(await store.hosts.get("old-web")).toMatchObject({
      labels: { role: "web", team: "any" },
      ungrantedLabels: {},
      grant: { apps: null, labels: null },
    });
    // The old SSH host belongs to no app yet: the first app deploying to it claims it.
    expect((await store.hosts.get("old-ssh"))?.app).toBeNull();
    await store.fleet.ensureSshHost("shop", "old-ssh", "10.0.0.1", {});
    await expect(store.fleet.ensureSshHost("blog", "old-ssh", "10.0.0.1", {})).rejects.toMatchObject({
      code: "E_CONFLICT",
    });
  });
});
