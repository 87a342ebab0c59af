import { Command, CommanderError } from "commander";
import { InvalidSettingError } from "../config/client-settings.js";
import { isTurnoutError } from "../domain/errors.js";
import { VERSION } from "../server/version.js";
import { ApiError, ConnectionError } from "./api-client.js";
import { registerAgentCommand } from "./commands/agent.js";
import { registerAuditCommand } from "./commands/audit.js";
import { registerCommitCommands } from "./commands/commit.js";
import { registerConfigCommands } from "./commands/config.js";
import { registerDeployCommands } from "./commands/deploy.js";
import { registerFleetCommands } from "./commands/fleet.js";
import { registerGcCommand } from "./commands/gc.js";
import { registerHistoryCommand } from "./commands/history.js";
import { registerHostsCommand } from "./commands/hosts.js";
import { registerLockCommands } from "./commands/lock.js";
import { registerLoginCommand } from "./commands/login.js";
import { registerLogsCommands } from "./commands/logs.js";
import { registerPendingCommand } from "./commands/pending.js";
import { registerPromoteCommands } from "./commands/promote.js";
import { registerServerCommand, type StartServer } from "./commands/server.js";
import { registerStatusCommands } from "./commands/status.js";
import { registerTokenCommands } from "./commands/token.js";
import { registerUiCommand } from "./commands/ui.js";
import { type CliContext, CommandFailed, type GlobalOptions, println } from "./context.js";
import { escapeLines, jsonText, t } from "./terminal-text.js";

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
  // Known before parsing, so that even a usage error can be reported as JSON.
  const json = wantsJson(argv);
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
      // Help and usage text is the program's own, but echoes what the user typed: escaped, lines kept.
      writeOut: (text) => ctx.stdout.write(escapeLines(text)),
      // With --json, a usage error is reported once, as JSON, by report().
      writeErr: (text) => (json ? undefined : ctx.stderr.write(escapeLines(text))),
    })
    .showHelpAfterError("(run turnout --help for usage)")
    .option(
      "--server <url>",
      "the Turnout server (env TURNOUT_SERVER; default: the saved login, else http://127.0.0.1:7700)",
    )
    .option("--token <token>", "API token (env TURNOUT_TOKEN; default: the saved login)")
    .option(
      "--data-dir <dir>",
      "a local server's data directory, where its admin token is (env TURNOUT_HOME; default ./.turnout)",
    )
    .option("--json", "print the API's JSON response as is");

  registerServerCommand(program, kit, options.startServer);
  registerLoginCommand(program, kit);
  registerStatusCommands(program, kit);
  registerHistoryCommand(program, kit);
  registerPendingCommand(program, kit);
  registerFleetCommands(program, kit);
  registerDeployCommands(program, kit);
  registerPromoteCommands(program, kit);
  registerLogsCommands(program, kit);
  registerLockCommands(program, kit);
  registerCommitCommands(program, kit);
  registerTokenCommands(program, kit);
  registerConfigCommands(program, kit);
  registerAgentCommand(program, kit);
  registerHostsCommand(program, kit);
  registerGcCommand(program, kit);
  registerAuditCommand(program, kit);
  registerUiCommand(program, kit);

  try {
    await program.parseAsync(argv, { from: "user" });
    return status;
  } catch (error) {
    return report(ctx, error, json);
  }
}

/** `--json` among the arguments (not after `--`, where it would be an operand). */
function wantsJson(argv: readonly string[]): boolean {
  const end = argv.indexOf("--");
  return (end === -1 ? argv : argv.slice(0, end)).includes("--json");
}

/**
 * Turns anything thrown into a message on stderr and an exit status. With
 * `--json`, the message is one line of JSON on stderr,
 * `{"error":{"code","message","details"?}}`, whatever failed: the API, the
 * connection, or the command line itself. The exit status is the same.
 */
function report(ctx: CliContext, error: unknown, json: boolean): number {
  const failure = describe(error);
  if (failure.status === EXIT_OK) return EXIT_OK;
  if (json) {
    const body = {
      code: failure.code,
      message: failure.message,
      ...(failure.details ? { details: failure.details } : {}),
    };
    println(ctx.stderr, jsonText(JSON.stringify({ error: body })));
    return failure.status;
  }
  // commander has printed its own message (and the usage hint) already.
  if (!(error instanceof CommanderError)) {
    println(
      ctx.stderr,
      error instanceof ApiError
        ? t`error: ${failure.message} (${failure.code})`
        : t`error: ${failure.message}`,
    );
  }
  if (failure.code === "E_UNAUTHORIZED" && error instanceof ApiError) {
    println(
      ctx.stderr,
      t`hint: the token was not accepted; run \`turnout login --server URL --token TOKEN\``,
    );
  }
  return failure.status;
}

interface Failure {
  status: number;
  code: string;
  message: string;
  details?: Record<string, unknown> | undefined;
}

/** What failed, as the stable codes of api.md (and E_USAGE, E_CONNECTION for what never reached the server). */
function describe(error: unknown): Failure {
  if (error instanceof CommanderError) {
    if (error.code === "commander.helpDisplayed" || error.code === "commander.version") {
      return { status: EXIT_OK, code: "", message: "" };
    }
    return {
      status: EXIT_USAGE,
      code: "E_USAGE",
      message: error.message.replace(/^error: /, ""),
      details: { reason: error.code.replace(/^commander\./, "") },
    };
  }
  if (error instanceof InvalidSettingError)
    return { status: EXIT_USAGE, code: "E_USAGE", message: error.message };
  if (error instanceof ApiError) {
    return { status: EXIT_FAILED, code: error.code, message: error.message, details: error.details };
  }
  if (error instanceof ConnectionError) {
    return {
      status: EXIT_FAILED,
      code: "E_CONNECTION",
      message: error.message,
      details: { server: error.server },
    };
  }
  if (isTurnoutError(error)) {
    return { status: EXIT_FAILED, code: error.code, message: error.message, details: error.details };
  }
  if (error instanceof CommandFailed)
    return { status: EXIT_FAILED, code: "E_FAILED", message: error.message };
  return {
    status: EXIT_FAILED,
    code: "E_INTERNAL",
    message: error instanceof Error ? error.message : String(error),
  };
}
