/**
 * The kind of a statement, for counting statements by kind
 * (turnout_database_statements_total): its verb and the first table it
 * names, e.g. "update deploy_hosts", "select hosts", "begin". The text is
 * the compiled SQL, so the kinds are the statements the code can build — a
 * bounded set — not anything a user typed. Which kinds a deploy costs is
 * what tells where its statements per host go (docs/benchmarks.md,
 * "Control plane at scale").
 */
export function statementKind(sql: string): string {
  let verb = /^\s*(\w+)/.exec(sql)?.[1]?.toLowerCase() ?? "other";
  // A WITH is named by its first part too ("with insert host_calls"): several statements start alike.
  if (verb === "with") verb += ` ${/\bas\s*\(\s*(\w+)/i.exec(sql)?.[1]?.toLowerCase() ?? ""}`;
  const table = /\b(?:into|update|from)\s+(?!unnest\b)(?:"?\w+"?\.)?"?(\w+)"?/i.exec(sql)?.[1];
  const notify = /\bpg_notify\s*\(/i.test(sql) ? " +notify" : "";
  return (table ? `${verb} ${table}` : verb) + notify;
}

/** How many different texts are remembered with their kind: the statements' texts are few, but IN lists vary. */
const REMEMBERED = 2000;

/** Counts statements by kind; a text's kind is worked out once. */
export class StatementKinds {
  private readonly counts = new Map<string, number>();
  private readonly kindOf = new Map<string, string>();

  count(sql: string): void {
    let kind = this.kindOf.get(sql);
    if (kind === undefined) {
      kind = statementKind(sql);
      if (this.kindOf.size < REMEMBERED) this.kindOf.set(sql, kind);
    }
    this.counts.set(kind, (this.counts.get(kind) ?? 0) + 1);
  }

  snapshot(): ReadonlyMap<string, number> {
    return new Map(this.counts);
  }
}
