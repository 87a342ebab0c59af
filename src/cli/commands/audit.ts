import { type Command, InvalidArgumentError } from "commander";
import type { AuditEventJson } from "../api-types.js";
import { parseName, parsePositiveInt } from "../args.js";
import { clientFor, printJson, println } from "../context.js";
import { auditTable } from "../output.js";
import type { Kit } from "../program.js";

const SOURCES = ["api", "cli", "chat", "webhook", "schedule"];
const UNIT_MS: Record<string, number> = { m: 60_000, h: 3_600_000, d: 86_400_000 };

/**
 * `--since 2h` / `--since 7d` (that long ago) or an ISO 8601 date or time,
 * sent to the server as an ISO time.
 */
export function parseAuditTime(value: string, now: number): string {
  const relative = /^([0-9]{1,6})(m|h|d)$/.exec(value);
  if (relative) return new Date(now - Number(relative[1]) * UNIT_MS[relative[2]!]!).toISOString();
  const ms = /^\d{4}-\d{2}-\d{2}([T ][0-9:.]+(Z|[+-]\d{2}:?\d{2})?)?$/.test(value)
    ? Date.parse(value)
    : Number.NaN;
  if (!Number.isFinite(ms)) {
    throw new InvalidArgumentError(
      `expected a time such as 2h, 7d, 2026-01-31 or 2026-01-31T12:00:00Z, got '${value}'`,
    );
  }
  return new Date(ms).toISOString();
}

function parseSource(value: string): string {
  if (!SOURCES.includes(value))
    throw new InvalidArgumentError(`expected one of ${SOURCES.join(", ")}, got '${value}'`);
  return value;
}

function parseAction(value: string): string {
  if (!/^[a-z][a-z.-]{0,39}$/.test(value)) {
    throw new InvalidArgumentError(`expected an action such as deploy, lock or token.create, got '${value}'`);
  }
  return value;
}

export function registerAuditCommand(program: Command, { ctx, action, globals }: Kit): void {
  program
    .command("audit")
    .description("who did what, from where and when (deploys, locks, approvals, tokens, …), newest first")
    .argument("[app]", "only this app's events", parseName("app"))
    .argument("[env]", "only this environment's events", parseName("environment"))
    .option(
      "--action <action>",
      "only this action (deploy, rollback, deploy.cancel, lock, token.create, …)",
      parseAction,
    )
    .option("--actor <name>", "only what this token (by name) did")
    .option("--source <source>", `only from this source (${SOURCES.join(", ")})`, parseSource)
    .option("--since <time>", "only events since then: 2h, 7d, or an ISO 8601 date or time", (v: string) =>
      parseAuditTime(v, Date.now()),
    )
    .option("--until <time>", "only events before then: 2h, 7d, or an ISO 8601 date or time", (v: string) =>
      parseAuditTime(v, Date.now()),
    )
    .option("--limit <n>", "events to show (at most 500)", parsePositiveInt, 50)
    .action(
      action(
        async (
          app: string | undefined,
          env: string | undefined,
          flags: {
            action?: string;
            actor?: string;
            source?: string;
            since?: string;
            until?: string;
            limit: number;
          },
          command: Command,
        ) => {
          const options = globals(command);
          const client = clientFor(ctx, options);
          const response = await client.get<{ events: AuditEventJson[]; nextCursor: string | null }>(
            "/api/v1/audit",
            {
              app,
              env,
              action: flags.action,
              actor: flags.actor,
              source: flags.source,
              since: flags.since,
              until: flags.until,
              limit: Math.min(flags.limit, 500),
            },
          );
          if (options.json) printJson(ctx, response.text);
          else println(ctx.stdout, auditTable(response.body.events));
          return 0;
        },
      ),
    );
}
