import type { Command } from "commander";
import type { ConfigProblemJson, ConfigStatusJson } from "../api-types.js";
import { clientFor, printJson, println } from "../context.js";
import { clean, formatDate, problemLine } from "../output.js";
import type { Kit } from "../program.js";
import { escapeLines } from "../terminal-text.js";

export function registerConfigCommands(program: Command, { ctx, action, globals }: Kit): void {
  const config = program.command("config").description("the server's app configuration");

  config
    .command("status")
    .description("active configuration revision, when it was loaded, and its problems")
    .action(
      action(async (_flags: unknown, command: Command) => {
        const options = globals(command);
        const response = await clientFor(ctx, options).get<ConfigStatusBody>("/api/v1/config");
        if (options.json) {
          printJson(ctx, response.text);
          return 0;
        }
        println(ctx.stdout, escapeLines(configStatusText(response.body)));
        return 0;
      }),
    );
}

/** GET /api/v1/config; `source` and `lastError` are absent from servers older than configuration repositories. */
export type ConfigStatusBody = ConfigStatusJson & {
  source?: { kind: "dir"; path: string } | { kind: "git"; url: string; branch: string };
  lastError?: { revision: string; at: string; problems: ConfigProblemJson[] } | null;
};

export function configStatusText(status: ConfigStatusBody): string {
  const problems = status.problems ?? [];
  const lines: string[] = [];
  if (status.source) lines.push(`source     ${clean(sourceText(status.source))}`);
  lines.push(
    // A configuration repository whose every commit so far was refused has no active revision.
    `revision   ${status.revision ? clean(status.revision) : "(none)"}`,
    `loaded at  ${formatDate(status.loadedAt)}`,
    problems.length === 0 ? "problems   none" : `problems   ${problems.length}`,
  );
  for (const problem of problems) lines.push(`  ${problemLine(problem)}`);
  const refused = status.lastError;
  if (refused) {
    lines.push(`last refused: ${clean(refused.revision.slice(0, 12))} at ${formatDate(refused.at)}`);
    for (const problem of refused.problems) lines.push(`  ${problemLine(problem)}`);
  }
  return lines.join("\n");
}

function sourceText(source: NonNullable<ConfigStatusBody["source"]>): string {
  return source.kind === "git" ? `git ${source.url}@${source.branch}` : `directory ${source.path}`;
}
