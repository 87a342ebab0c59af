import type { Database as BetterSqlite } from "better-sqlite3";
import type { SqliteDatabase, SqliteStatement } from "kysely";

/**
 * Kysely's SQLite driver prepares every query anew; preparing costs more than
 * running the small queries of the read endpoints. Queries are built from a
 * fixed set of shapes, so caching prepared statements by their SQL text is
 * bounded in practice; the cap keeps it bounded in theory.
 * (Statements are used synchronously one at a time, so sharing them is safe;
 * Turnout does not use Kysely's streaming, which would hold one open.)
 */
export function withStatementCache(sqlite: BetterSqlite, capacity = 500): SqliteDatabase {
  const cache = new Map<string, SqliteStatement>();
  return {
    close: () => sqlite.close(),
    prepare(sql: string): SqliteStatement {
      const cached = cache.get(sql);
      if (cached) {
        // Move to the back: the map's order is our recency order.
        cache.delete(sql);
        cache.set(sql, cached);
        return cached;
      }
      const statement = sqlite.prepare(sql) as unknown as SqliteStatement;
      cache.set(sql, statement);
      if (cache.size > capacity) cache.delete(cache.keys().next().value!);
      return statement;
    },
  };
}
