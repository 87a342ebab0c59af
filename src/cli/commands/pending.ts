import type { Command } from "commander";
import type { PendingComponentJson } from "../api-types.js";
import { parseName } from "../args.js";
import { clientFor, envPath, printJson, println } from "../context.js";
import { pendingLines } from "../output.js";
import type { Kit } from "../program.js";

export function registerPendingCommand(program: Command, { ctx, action, globals }: Kit): void {
  program
    .command("pending")
    .description("what the next deploy would ship: commits since the current release, per component")
    .argument("<app>", "app name", parseName("app"))
    .argument("<env>", "environment name", parseName("environment"))
    .action(
      action(async (app: string, env: string, _flags: unknown, command: Command) => {
        const options = globals(command);
        const response = await clientFor(ctx, options).get<{ components: PendingComponentJson[] }>(
          envPath(app, env, "pending"),
        );
        if (options.json) printJson(ctx, response.text);
        else println(ctx.stdout, pendingLines(response.body.components));
        return 0;
      }),
    );
}
