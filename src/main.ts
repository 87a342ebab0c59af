import os from "node:os";
import type { CliContext } from "./cli/context.js";
import { runCli } from "./cli/program.js";
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

/**
 * Resolves on the next SIGINT or SIGTERM. Once it has, a further signal gets
 * Node's default (exit at once) unless the caller waits again — as `turnout
 * server` does once, so that a second signal interrupts running deploys.
 */
function waitForStop(): Promise<string> {
  return new Promise((resolve) => {
    const stop = (signal: NodeJS.Signals) => {
      process.off("SIGINT", stop);
      process.off("SIGTERM", stop);
      resolve(signal);
    };
    process.on("SIGINT", stop);
    process.on("SIGTERM", stop);
  });
}
