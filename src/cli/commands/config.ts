import type { Command } from "commander";
import type { ConfigStatusJson } from "../api-types.js";
import { clientFor, printJson, println } from "../context.js";
import { clean, formatDate, problemLine } from "../output.js";
import type { Kit } from "../program.js";

export function registerConfigCommands(program: Command, { ctx, action, globals }: Kit): void {
  const config = program.command("config").description("the server's app configuration");

  config
    .command("status")
    .description("active configuration revision, when it was loaded, and its problems")
    .action(
      action(async (_flags: unknown, command: Command) => {
        const options = globals(command);
        const response = await clientFor(ctx, options).get<ConfigStatusJson>("/api/v1/config");
        if (options.json) {
          printJson(ctx, response.text);
          return 0;
        }
        println(ctx.stdout, configStatusText(response.body));
        return 0;
      }),
    );
}

export function configStatusText(status: ConfigStatusJson): string {
  const problems = status.problems ?? [];
  const lines = [
    `revision   ${clean(status.revision)}`,
    `loaded at  ${formatDate(status.loadedAt)}`,
    problems.length === 0 ? "problems   none" : `problems   ${problems.length}`,
  ];
  for (const problem of problems) lines.push(`  ${problemLine(problem)}`);
  return lines.join("\n");
}
