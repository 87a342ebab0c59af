import { Command, CommanderError } from "commander";
import { InvalidSettingError } from "../config/client-settings.js";
import { isTurnoutError } from "../domain/errors.js";
import { VERSION } from "../server/version.js";
import { ApiError, ConnectionError } from "./api-client.js";
import { registerAgentCommand } from "./commands/agent.js";
import { registerConfigCommands } from "./commands/config.js";
import { registerDeployCommands } from "./commands/deploy.js";
import { registerFleetCommands } from "./commands/fleet.js";
import { registerHistoryCommand } from "./commands/history.js";
import { registerHostsCommand } from "./commands/hosts.js";
import { registerLockCommands } from "./commands/lock.js";
import { registerLoginCommand } from "./commands/login.js";
import { registerLogsCommands } from "./commands/logs.js";
import { registerPendingCommand } from "./commands/pending.js";
import { registerServerCommand, type StartServer } from "./commands/server.js";
import { registerStatusCommands } from "./commands/status.js";
import { registerTokenCommands } from "./commands/token.js";
import { registerUiCommand } from "./commands/ui.js";
import { type CliContext, CommandFailed, type GlobalOptions, println } from "./context.js";

/** Exit statuses of `turnout`, as documented. */
export const EXIT_OK = 0;
export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;

/**
 * What every command registrar gets: the context, a wrapper that records an
 * action's exit status (commander ignores return values), and the global
 * options as seen from a subcommand.
 */
export interface Kit {
  ctx: CliContext;
  action<A extends unknown[]>(fn: (...args: A) => Promise<number | undefined>): (...args: A) => Promise<void>;
  globals(command: Command): GlobalOptions;
}

export interface ProgramOptions {
  startServer: StartServer;
}

export async function runCli(argv: string[], ctx: CliContext, options: ProgramOptions): Promise<number> {
  let status = EXIT_OK;
  const kit: Kit = {
    ctx,
    action:
      (fn) =>
      async (...args) => {
        status = (await fn(...args)) ?? EXIT_OK;
      },
    globals: (command) => command.optsWithGlobals() as GlobalOptions,
  };

  const program = new Command("turnout")
    .description("Turnout: continuous deployment from git to environments and fleets")
    .version(VERSION, "-V, --version")
    .exitOverride()
    .configureOutput({
      writeOut: (text) => ctx.stdout.write(text),
      writeErr: (text) => ctx.stderr.write(text),
    })
    .showHelpAfterError("(run turnout --help for usage)")
    .option(
      "--server <url>",
      "the Turnout server (env TURNOUT_SERVER; default: the saved login, else http://127.0.0.1:7700)",
    )
    .option("--token <token>", "API token (env TURNOUT_TOKEN; default: the saved login)")
    .option("--json", "print the API's JSON response as is");

  registerServerCommand(program, kit, options.startServer);
  registerLoginCommand(program, kit);
  registerStatusCommands(program, kit);
  registerHistoryCommand(program, kit);
  registerPendingCommand(program, kit);
  registerFleetCommands(program, kit);
  registerDeployCommands(program, kit);
  registerLogsCommands(program, kit);
  registerLockCommands(program, kit);
  registerTokenCommands(program, kit);
  registerConfigCommands(program, kit);
  registerAgentCommand(program, kit);
  registerHostsCommand(program, kit);
  registerUiCommand(program, kit);

  try {
    await program.parseAsync(argv, { from: "user" });
    return status;
  } catch (error) {
    return report(ctx, error);
  }
}

/** Turns anything thrown into a message on stderr and an exit status. */
function report(ctx: CliContext, error: unknown): number {
  if (error instanceof CommanderError) {
    // commander has printed its own message (or the help) already.
    return error.code === "commander.helpDisplayed" || error.code === "commander.version"
      ? EXIT_OK
      : EXIT_USAGE;
  }
  if (error instanceof InvalidSettingError) {
    println(ctx.stderr, `error: ${error.message}`);
    return EXIT_USAGE;
  }
  if (error instanceof ApiError) {
    println(ctx.stderr, `error: ${error.message} (${error.code})`);
    if (error.code === "E_UNAUTHORIZED") {
      println(ctx.stderr, "hint: the token was not accepted; run `turnout login --server URL --token TOKEN`");
    }
    return EXIT_FAILED;
  }
  if (error instanceof ConnectionError || error instanceof CommandFailed || isTurnoutError(error)) {
    println(ctx.stderr, `error: ${error.message}`);
    return EXIT_FAILED;
  }
  println(ctx.stderr, `error: ${error instanceof Error ? error.message : String(error)}`);
  return EXIT_FAILED;
}
