import path from "node:path";
import { type Command, InvalidArgumentError, Option } from "commander";
import { labelProblem } from "../../agent/agent-labels.js";
import { InvalidSettingError, normalizeServerUrl } from "../../config/client-settings.js";
import { isLogLevel, LOG_LEVELS, type LogLevel } from "../../observability/log-levels.js";
import { parseName, parsePositiveInt } from "../args.js";
import type { CliContext } from "../context.js";
import type { Kit } from "../program.js";
import { escapeLines, joinLines } from "../terminal-text.js";

export const DEFAULT_AGENT_ROOT = "/srv/turnout";

export interface AgentFlags {
  name?: string;
  label?: Record<string, string>;
  root?: string;
  heartbeat?: number;
  maxProtocol?: number;
  logLevel?: LogLevel;
}

/**
 * `turnout agent`: the process on each fleet host. It only ever dials out,
 * so hosts behind a firewall need no inbound rule. Everything heavy (ws, the
 * host layout) is loaded when the command runs, like the server.
 */
export function registerAgentCommand(program: Command, { ctx, action, globals }: Kit): void {
  const command = program
    .command("agent")
    .description("run the host agent: connects out to the server (never listens) and installs releases here");
  addAgentOptions(command).action(
    action(async (flags: AgentFlags, self: Command) => runAgent(ctx, { ...globals(self), ...flags })),
  );
}

/**
 * The agent's own options, shared by `turnout agent` and the bundled
 * `turnout-agent` (src/agent/standalone.ts), which takes the same flags.
 */
export function addAgentOptions(command: Command): Command {
  return command
    .option("--name <name>", "this host's name (default: the machine's host name)", parseName("host"))
    .option(
      "--label <key=value>",
      "a label deploys select hosts by, repeatable (counts only if the host's grant allows it)",
      collectLabel,
    )
    .option("--root <dir>", `where releases live (default ${DEFAULT_AGENT_ROOT})`)
    .option(
      "--log-level <level>",
      "fatal, error, warn, info, debug, trace or silent (default info, env TURNOUT_LOG_LEVEL)",
      parseLogLevel,
    )
    .addOption(
      new Option("--heartbeat <ms>", "heartbeat interval in ms (tests)")
        .argParser(parsePositiveInt)
        .hideHelp(),
    )
    .addOption(
      // Speak an older protocol, as an agent of an earlier release would (mixed-version tests).
      new Option("--max-protocol <n>", "the newest agent protocol to speak (tests)")
        .argParser(parsePositiveInt)
        .hideHelp(),
    )
    .addHelpText(
      "after",
      "\nThe first connection uses --token (an agent token, which grants the host its apps and labels:" +
        "\n  turnout token create NAME --role agent --app APP --label KEY=VALUE);" +
        "\nthe server then issues this host its own token, saved in ROOT/.turnout/host-token and used from then on." +
        "\nLabels given here beyond the grant are ignored (turnout hosts shows them as IGNORED LABELS).\n",
    );
}

/** Runs the agent until SIGINT/SIGTERM; 0 when it stopped cleanly. */
export async function runAgent(
  ctx: CliContext,
  flags: AgentFlags & { server?: string | undefined; token?: string | undefined },
  version?: string,
): Promise<number> {
  const serverValue = flags.server || ctx.env["TURNOUT_SERVER"];
  if (!serverValue) throw new InvalidSettingError("turnout agent needs --server URL (or TURNOUT_SERVER)");
  const server = normalizeServerUrl(serverValue);
  const root = path.resolve(ctx.cwd, flags.root ?? DEFAULT_AGENT_ROOT);

  const fromEnv = ctx.env["TURNOUT_LOG_LEVEL"] || "info";
  if (!isLogLevel(fromEnv)) {
    throw new InvalidSettingError(`TURNOUT_LOG_LEVEL must be one of ${LOG_LEVELS.join(", ")}`);
  }
  const level = flags.logLevel ?? fromEnv;
  const [{ Agent }, state, { LocalHostOps }, { assertLabels }, { createAgentLogger }] = await Promise.all([
    import("../../agent/agent.js"),
    import("../../agent/agent-state.js"),
    import("../../agent/host-layout/index.js"),
    import("../../agent/agent-labels.js"),
    import("../../agent/agent-logger.js"),
  ]);
  const token = flags.token || ctx.env["TURNOUT_TOKEN"] || undefined;
  if (!token && !state.readHostToken(root)) {
    throw new InvalidSettingError(
      `turnout agent needs --token TOKEN (an agent token) until it has a host token in ${state.hostTokenPath(root)}`,
    );
  }
  const name = flags.name ?? state.defaultHostName();
  if (!name) throw new InvalidSettingError("cannot make a host name from this machine's name: pass --name");
  const labels = assertLabels(flags.label ?? {});

  const stop = new AbortController();
  void ctx.waitForStop().then(() => stop.abort());
  // JSON lines when not on a terminal, readable lines on one. They quote
  // the server (refusal reasons): escaped like any server text.
  const format = ctx.env["TURNOUT_LOG_FORMAT"];
  const print = createAgentLogger({
    level,
    pretty: format === "pretty" || (format !== "json" && ctx.stdout.isTTY === true),
    write: (text) => ctx.stdout.write(joinLines([escapeLines(text.replace(/\n$/, "")), escapeLines("")])),
    host: name,
  });
  print(`agent ${name}: connecting to ${server}, releases in ${root}`);
  await new Agent({
    server,
    enrollmentToken: token,
    name,
    labels,
    root,
    version: version ?? (await import("../../server/version.js")).VERSION,
    ops: new LocalHostOps({ name, root }),
    print,
    ...(flags.heartbeat ? { heartbeatMs: flags.heartbeat } : {}),
    ...(flags.maxProtocol ? { protocol: flags.maxProtocol } : {}),
  }).run(stop.signal);
  return 0;
}

function parseLogLevel(value: string): LogLevel {
  if (!isLogLevel(value)) {
    throw new InvalidArgumentError(`expected one of ${LOG_LEVELS.join(", ")}, got '${value}'`);
  }
  return value;
}

/** Commander reducer for repeated `--label key=value`; the same rule as the server's. */
function collectLabel(value: string, previous: Record<string, string> = {}): Record<string, string> {
  const eq = value.indexOf("=");
  if (eq <= 0) throw new InvalidArgumentError(`expected KEY=VALUE, got '${value}'`);
  const key = value.slice(0, eq);
  const labelValue = value.slice(eq + 1);
  const problem = labelProblem(key, labelValue);
  if (problem) throw new InvalidArgumentError(problem);
  return { ...previous, [key]: labelValue };
}
