import os from "node:os";
import { Command, CommanderError } from "commander";
import { addAgentOptions, runAgent } from "./cli/commands/agent.js";
import type { CliContext } from "./cli/context.js";
import { waitForStop } from "./cli/stop-signal.js";
import { InvalidSettingError } from "./config/client-settings.js";
import { isTurnoutError } from "./domain/errors.js";

/**
 * `turnout-agent`: the host agent on its own, bundled by bin/build-agent.js
 * into one file with no native modules (dist/agent/turnout-agent.cjs), so a
 * host needs Node.js and nothing else: no compiler, no better-sqlite3, no
 * node_modules. The flags are those of `turnout agent` (and `agent` may be
 * given first, so a unit file written for `turnout agent` works unchanged).
 * Exit status: 0 stopped cleanly, 1 failed, 2 usage.
 */
declare const TURNOUT_AGENT_VERSION: string | undefined;

export async function agentMain(argv: string[]): Promise<number> {
  // Set by the bundler; the unbundled build (tests) reads package.json.
  const version =
    typeof TURNOUT_AGENT_VERSION === "string"
      ? TURNOUT_AGENT_VERSION
      : (await import("./server/version.js")).VERSION;
  const ctx: CliContext = {
    stdout: process.stdout,
    stderr: process.stderr,
    env: process.env,
    homeDir: os.homedir(),
    cwd: process.cwd(),
    waitForStop,
  };
  let status = 0;
  const program = new Command("turnout-agent")
    .description(
      "the Turnout host agent: connects out to the server (never listens) and installs releases here",
    )
    .version(version, "-V, --version")
    .exitOverride()
    .option("--server <url>", "the Turnout server (env TURNOUT_SERVER)")
    .option("--token <token>", "an agent token, for the first connection (env TURNOUT_TOKEN)")
    .argument("[command]", "`agent`, optional (the flags of `turnout agent` work as they are)");
  addAgentOptions(program).action(async (command: string | undefined, flags) => {
    if (command !== undefined && command !== "agent") {
      throw new InvalidSettingError(`unknown command '${command}': turnout-agent only runs the agent`);
    }
    status = await runAgent(ctx, flags, version);
  });
  try {
    await program.parseAsync(argv, { from: "user" });
    return status;
  } catch (error) {
    if (error instanceof CommanderError) {
      return error.code === "commander.helpDisplayed" || error.code === "commander.version" ? 0 : 2;
    }
    const message = error instanceof Error ? error.message : String(error);
    process.stderr.write(`error: ${message.replace(/[\u0000-\u0008\u000b-\u001f\u007f]/g, "?")}\n`);
    if (error instanceof InvalidSettingError) return 2;
    return isTurnoutError(error) && error.code === "E_VALIDATION" ? 2 : 1;
  }
}

// The bundle is the executable itself (bin/build-agent.js sets this).
declare const TURNOUT_AGENT_BUNDLE: boolean | undefined;
if (typeof TURNOUT_AGENT_BUNDLE === "boolean" && TURNOUT_AGENT_BUNDLE) {
  agentMain(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (error: unknown) => {
      process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
      process.exitCode = 1;
    },
  );
}
