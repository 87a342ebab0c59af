import type { Command } from "commander";
import type { HostHistoryEntry } from "../../domain/dashboard.js";
import { parseName, parsePositiveInt } from "../args.js";
import { clientFor, path, printJson, println } from "../context.js";
import { formatDate, shortSha, table } from "../output.js";
import type { Kit } from "../program.js";
import { type TerminalText, t } from "../terminal-text.js";

/**
 * `turnout hosts history HOST [APP]`: every release a host ran, newest
 * first — when it switched, by which deploy, and what kind of deploy it was
 * (a deploy, a rollback, a reconcile, a self-heal).
 */
export function registerHostHistoryCommand(hosts: Command, { ctx, action, globals }: Kit): void {
  hosts
    .command("history")
    .description("every release a host ran: when it switched, by which deploy (rollbacks and self-heals too)")
    .argument("<host>", "the host's name", parseName("host"))
    .argument("[app]", "only this app's deploys", parseName("app"))
    .option("--limit <n>", "at most this many (default 50, at most 500)", parsePositiveInt)
    .action(
      action(async (host: string, app: string | undefined, flags: { limit?: number }, command: Command) => {
        const options = globals(command);
        const response = await clientFor(ctx, options).get<{ history: HostHistoryEntry[] }>(
          `/api/v1/hosts/${path(host)}/history`,
          { app, limit: flags.limit },
        );
        if (options.json) printJson(ctx, response.text);
        else println(ctx.stdout, hostHistoryTable(response.body.history));
        return 0;
      }),
    );
}

/** WHEN DEPLOY KIND RELEASE PREVIOUS STEP SHA USER; pure, so its format is unit tested. */
export function hostHistoryTable(entries: HostHistoryEntry[]): TerminalText {
  if (entries.length === 0) return t`no fleet deploy reached this host`;
  return table(
    ["WHEN", "DEPLOY", "KIND", "RELEASE", "PREVIOUS", "STEP", "SHA", "USER"],
    entries.map((e) => [
      // When it switched; otherwise when the host's step last changed (it never ran that release).
      e.switchedAt ? formatDate(e.switchedAt) : `(${formatDate(e.updatedAt)})`,
      `${e.app}/${e.env}#${e.number}`,
      kindOf(e),
      e.releaseId,
      e.previousRelease ?? "-",
      e.switched ? e.step : `${e.step} (not switched)`,
      shortSha(e.sha),
      e.user,
    ]),
  );
}

function kindOf(e: HostHistoryEntry): string {
  if (e.selfHeal) return "self-heal";
  if (e.rollbackOf !== null && e.rollbackOf !== undefined) return `rollback to #${e.rollbackOf}`;
  if (e.trigger === "reconcile") return "reconcile";
  return e.trigger === "promote" ? "promote" : "deploy";
}
