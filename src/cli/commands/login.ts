import type { Command } from "commander";
import {
  credentialsPath,
  InvalidSettingError,
  normalizeServerUrl,
  saveCredentials,
} from "../../config/client-settings.js";
import { ApiClient } from "../api-client.js";
import { println } from "../context.js";
import type { Kit } from "../program.js";
import { t } from "../terminal-text.js";

export function registerLoginCommand(program: Command, { ctx, action, globals }: Kit): void {
  program
    .command("login")
    .description("check a token against a server and save it as the default (--server URL --token TOKEN)")
    .action(
      action(async (_options: unknown, command: Command) => {
        const { server: rawServer, token } = globals(command);
        if (!rawServer || !token) throw new InvalidSettingError("login needs --server URL and --token TOKEN");
        const server = normalizeServerUrl(rawServer);
        // A token that does not work must not become the default.
        await new ApiClient({ server, token }).get("/api/v1/apps");
        const file = credentialsPath(ctx.env, ctx.homeDir);
        saveCredentials(file, server, token);
        println(ctx.stderr, t`logged in to ${server} (saved in ${file})`);
        return 0;
      }),
    );
}
