import type { Command } from "commander";
import type { Lock } from "../../domain/lock.js";
import { parseName } from "../args.js";
import { clientFor, envPath, printJson, println } from "../context.js";
import type { Kit } from "../program.js";
import { t } from "../terminal-text.js";

export function registerLockCommands(program: Command, { ctx, action, globals }: Kit): void {
  program
    .command("lock")
    .description("stop new deploys to an environment until it is unlocked")
    .argument("<app>", "app name", parseName("app"))
    .argument("<env>", "environment name", parseName("environment"))
    .requiredOption("--reason <text>", "why: shown to everyone who tries to deploy")
    .action(
      action(async (app: string, env: string, flags: { reason: string }, command: Command) => {
        const options = globals(command);
        const response = await clientFor(ctx, options).put<{ lock: Lock }>(envPath(app, env, "lock"), {
          reason: flags.reason,
        });
        if (options.json) printJson(ctx, response.text);
        else println(ctx.stdout, t`locked ${app}/${env}: ${response.body.lock.reason}`);
        return 0;
      }),
    );

  program
    .command("unlock")
    .description("allow deploys to an environment again")
    .argument("<app>", "app name", parseName("app"))
    .argument("<env>", "environment name", parseName("environment"))
    .action(
      action(async (app: string, env: string, _flags: unknown, command: Command) => {
        const options = globals(command);
        const response = await clientFor(ctx, options).delete<{ lock: Lock | null }>(
          envPath(app, env, "lock"),
        );
        const lock = response.body.lock;
        if (options.json) printJson(ctx, response.text);
        else if (lock)
          println(ctx.stdout, t`unlocked ${app}/${env} (was locked by ${lock.lockedBy}: ${lock.reason})`);
        else println(ctx.stdout, t`${app}/${env} was not locked`);
        return 0;
      }),
    );
}
