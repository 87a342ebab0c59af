import type { Command } from "commander";
import type { AppSummary, ReleaseJson } from "../api-types.js";
import { parseName, parsePositiveInt } from "../args.js";
import { clientFor, envPath, path, printJson, println } from "../context.js";
import { historyLines } from "../output.js";
import type { Kit } from "../program.js";

export function registerHistoryCommand(program: Command, { ctx, action, globals }: Kit): void {
  program
    .command("history")
    .description("releases that were live, newest first (every environment when ENV is left out)")
    .argument("<app>", "app name", parseName("app"))
    .argument("[env]", "environment name", parseName("environment"))
    .option("--limit <n>", "releases per environment", parsePositiveInt, 20)
    .action(
      action(async (app: string, env: string | undefined, flags: { limit: number }, command: Command) => {
        const options = globals(command);
        const client = clientFor(ctx, options);
        if (env !== undefined) {
          const response = await client.get<{ releases: ReleaseJson[] }>(envPath(app, env, "releases"), {
            limit: flags.limit,
          });
          if (options.json) printJson(ctx, response.text);
          else println(ctx.stdout, historyLines(response.body.releases, false));
          return 0;
        }
        const { body } = await client.get<{ app: AppSummary }>(`/api/v1/apps/${path(app)}`);
        const pages = await Promise.all(
          body.app.environments.map((e) =>
            client.get<{ releases: ReleaseJson[] }>(envPath(app, e.name, "releases"), { limit: flags.limit }),
          ),
        );
        // Several requests, one document: the same shape as one environment's answer.
        const releases = pages
          .flatMap((page) => page.body.releases)
          .sort((a, b) => b.createdAt.localeCompare(a.createdAt) || b.id - a.id);
        if (options.json) printJson(ctx, JSON.stringify({ releases }));
        else println(ctx.stdout, historyLines(releases, true));
        return 0;
      }),
    );
}
