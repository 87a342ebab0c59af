import os from "node:os";
import type { CliContext } from "./cli/context.js";
import { runCli } from "./cli/program.js";
import { waitForStop } from "./cli/stop-signal.js";
import type { ServerSettings } from "./config/settings.js";

/**
 * The `turnout` executable (bin/turnout.js calls this and exits with the
 * result): 0 success, 1 a deploy failed or a request was refused, 2 usage.
 */
export async function main(argv: string[]): Promise<number> {
  const ctx: CliContext = {
    stdout: process.stdout,
    stderr: process.stderr,
    env: process.env,
    homeDir: os.homedir(),
    cwd: process.cwd(),
    waitForStop,
  };
  return runCli(argv, ctx, { startServer });
}

/** Loaded on demand: `turnout status` should not load Fastify, SQLite and the engine. */
async function startServer(settings: ServerSettings) {
  const module = await import("./server/start-server.js");
  return module.startServer(settings);
}
