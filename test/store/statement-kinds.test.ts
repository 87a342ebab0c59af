import { describe, expect, it } from "vitest";
import { StatementKinds, statementKind } from "../../src/store/statement-kinds.js";

/** Statements counted by kind (turnout_database_statements_total): verb and first table. */
describe("statement kinds", () => {
  it("names a statement by its verb and first table, a WITH by its first part, a NOTIFY as such", () => {
    expect(statementKind('update "deploy_hosts" set "step" = $1 where "deploy_id" = $2')).toBe(
      "update deploy_hosts",
    );
    expect(statementKind('select * from "hosts" where "token_hash" = $1')).toBe("select hosts");
    expect(statementKind('insert into "host_apps" ("host_id") values ($1) on conflict do nothing')).toBe(
      "insert host_apps",
    );
    expect(statementKind("begin")).toBe("begin");
    expect(
      statementKind(`
      WITH c AS (
        INSERT INTO host_calls (id) SELECT t.id FROM unnest($1::text[]) AS t(id) RETURNING 1
      )
      SELECT pg_notify('x', m.message) FROM unnest($2::text[]) AS m(message)`),
    ).toBe("with insert host_calls +notify");
    // unnest(…) is no table: the first real one names the statement.
    expect(
      statementKind(`WITH v AS (SELECT * FROM unnest($1::text[]) AS v(id)), l AS (
        INSERT INTO host_call_lines (call_id) SELECT * FROM unnest($2::text[]) RETURNING 1)
        SELECT pg_notify('x', v.id) FROM v`),
    ).toBe("with select host_call_lines +notify");
  });

  it("counts by kind", () => {
    const kinds = new StatementKinds();
    kinds.count('select * from "hosts" where "id" in ($1)');
    kinds.count('select * from "hosts" where "id" in ($1, $2)');
    kinds.count("commit");
    expect(Object.fromEntries(kinds.snapshot())).toEqual({ "select hosts": 2, commit: 1 });
  });
});
