import type { Command } from "commander";
import type { ServerSettings } from "../../config/settings.js";
import { parsePort } from "../args.js";
import type { Kit } from "../program.js";

/** main.ts loads the server lazily, so client commands never pay for its dependencies. */
export type StartServer = (
  settings: ServerSettings,
) => Promise<{ url: string; close(options?: { now?: AbortSignal }): Promise<void> }>;

export function registerServerCommand(
  program: Command,
  { ctx, action }: Kit,
  startServer: StartServer,
): void {
  program
    .command("server")
    .description("run the Turnout server: API, web UI, scheduler and workers")
    .option("--port <n>", "port to listen on (default 7700, env TURNOUT_PORT)", parsePort)
    .option("--host <host>", "address to listen on (default 127.0.0.1, env TURNOUT_HOST)")
    .option("--data-dir <dir>", "data directory (default ./.turnout, env TURNOUT_HOME)")
    .option("--config-dir <dir>", "app manifests (default ./turnout.d, env TURNOUT_CONFIG_DIR)")
    .option("--config-repo <url>", "app manifests from this git repository instead (env TURNOUT_CONFIG_REPO)")
    .option("--config-branch <branch>", "branch of --config-repo (default main, env TURNOUT_CONFIG_BRANCH)")
    .option("--demo", "create a demo app if no app is configured")
    .option(
      "--log-level <level>",
      "fatal, error, warn, info, debug, trace or silent (default info, env TURNOUT_LOG_LEVEL)",
    )
    .option(
      "--metrics-listen <host:port>",
      "also serve GET /metrics, without a token, on this address (env TURNOUT_METRICS_LISTEN)",
    )
    .action(
      action(
        async (
          flags: {
            port?: number;
            host?: string;
            dataDir?: string;
            configDir?: string;
            configRepo?: string;
            configBranch?: string;
            demo?: boolean;
            logLevel?: string;
            metricsListen?: string;
          },
          command: Command,
        ) => {
          // Loaded here: settings pull in yaml and zod, which client commands never need.
          const { resolveSettings } = await import("../../config/settings.js");
          const settings = resolveSettings(
            {
              port: flags.port,
              host: flags.host,
              // The global --data-dir (the client's: where a local server's admin token is)
              // takes the option wherever it stands on the line: it is the same directory.
              dataDir: flags.dataDir ?? (command.optsWithGlobals() as { dataDir?: string }).dataDir,
              configDir: flags.configDir,
              configRepo: flags.configRepo,
              configBranch: flags.configBranch,
              demo: flags.demo,
              logLevel: flags.logLevel,
              metricsListen: flags.metricsListen,
            },
            ctx.env,
            ctx.cwd,
          );
          const server = await startServer(settings);
          await ctx.waitForStop();
          // The first signal drains (running deploys get the grace); a second
          // one interrupts them now; a third gets Node's default: exit at once.
          const now = new AbortController();
          void ctx.waitForStop().then(() => now.abort());
          await server.close({ now: now.signal });
          return 0;
        },
      ),
    );
}
