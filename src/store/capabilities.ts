/**
 * Where SQLite and PostgreSQL differ, the difference is named here once and
 * the rest of the store asks for the capability instead of the dialect.
 */
export type Dialect = "sqlite" | "postgres";

export interface Capabilities {
  dialect: Dialect;
  /** Column type + constraint text for an auto-incrementing integer primary key. */
  autoIncrementPrimaryKey: "integer-autoincrement" | "serial";
  /** Several server processes may share the database (leases really compete). */
  sharedBetweenProcesses: boolean;
  /**
   * Row locks: a claim may lock the rows it picks (`SELECT … FOR UPDATE`) and
   * skip rows another server locked (`SKIP LOCKED`), as on PostgreSQL; without
   * them (SQLite) one process owns the database and its single write
   * transaction serialises claims anyway.
   */
  rowLocking: boolean;
  /**
   * Artifacts (manifests and blobs) are kept in the database too, so every
   * server sharing it can serve any of them (migration 0018); each server's
   * data directory is then a cache. Without it (SQLite: one server), the
   * data directory is the only store.
   */
  sharedArtifacts: boolean;
  /**
   * Array parameters (`unnest($1::int[], …)`): one statement can write many
   * rows with different values, where SQLite needs a statement per row.
   */
  arrayParameters: boolean;
  /**
   * Each statement, BEGIN and COMMIT included, is a round trip to another
   * process (PostgreSQL): a claim that usually finds nothing first looks
   * with one plain read, and opens its transaction only when there is
   * something to claim. On SQLite a statement is a function call and an
   * empty transaction costs nothing.
   */
  statementRoundTrips: boolean;
  /** SQLSTATE / message test for a unique-constraint violation. */
  isUniqueViolation(error: unknown): boolean;
}

export const SQLITE: Capabilities = {
  dialect: "sqlite",
  autoIncrementPrimaryKey: "integer-autoincrement",
  sharedBetweenProcesses: false,
  rowLocking: false,
  sharedArtifacts: false,
  arrayParameters: false,
  statementRoundTrips: false,
  isUniqueViolation: (error) =>
    typeof error === "object" &&
    error !== null &&
    String((error as { code?: unknown }).code ?? "").startsWith("SQLITE_CONSTRAINT"),
};

export const POSTGRES: Capabilities = {
  dialect: "postgres",
  autoIncrementPrimaryKey: "serial",
  sharedBetweenProcesses: true,
  rowLocking: true,
  sharedArtifacts: true,
  arrayParameters: true,
  statementRoundTrips: true,
  isUniqueViolation: (error) =>
    typeof error === "object" && error !== null && (error as { code?: unknown }).code === "23505",
};
