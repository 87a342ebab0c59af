import { type Command, Option } from "commander";
import { ROLES } from "../../domain/roles.js";
import type { TokenInfoJson } from "../api-types.js";
import { collectName, parseName } from "../args.js";
import { clientFor, path, printJson, println } from "../context.js";
import { tokensTable } from "../output.js";
import type { Kit } from "../program.js";
import { escapeText, t } from "../terminal-text.js";

export function registerTokenCommands(program: Command, { ctx, action, globals }: Kit): void {
  const token = program.command("token").description("API tokens (admin)");

  token
    .command("create")
    .description("create a token; it is printed once and cannot be shown again")
    .argument("<name>", "token name", parseName("token"))
    .addOption(new Option("--role <role>", "what the token may do").choices(ROLES).makeOptionMandatory())
    .option("--app <app>", "limit the token to an app, repeatable (default: every app)", collectName("app"))
    .action(
      action(async (name: string, flags: { role: string; app?: string[] }, command: Command) => {
        const options = globals(command);
        const body: Record<string, unknown> = { name, role: flags.role };
        if (flags.app) body["apps"] = flags.app;
        const response = await clientFor(ctx, options).post<{ token: string; info: TokenInfoJson }>(
          "/api/v1/tokens",
          body,
        );
        if (options.json) {
          printJson(ctx, response.text);
          return 0;
        }
        // The token alone on stdout, so `TOKEN=$(turnout token create …)` works.
        println(ctx.stdout, escapeText(response.body.token));
        const apps = response.body.info.apps;
        const scope = apps ? `apps: ${apps.join(", ")}` : "every app";
        println(ctx.stderr, t`created token '${name}' (${flags.role}, ${scope}); it is shown only this once`);
        return 0;
      }),
    );

  token
    .command("list")
    .description("list tokens (never their values)")
    .action(
      action(async (_flags: unknown, command: Command) => {
        const options = globals(command);
        const response = await clientFor(ctx, options).get<{ tokens: TokenInfoJson[] }>("/api/v1/tokens");
        if (options.json) printJson(ctx, response.text);
        else println(ctx.stdout, tokensTable(response.body.tokens));
        return 0;
      }),
    );

  token
    .command("revoke")
    .description("revoke a token: it stops working at once")
    .argument("<name>", "token name", parseName("token"))
    .action(
      action(async (name: string, _flags: unknown, command: Command) => {
        const options = globals(command);
        const response = await clientFor(ctx, options).delete(`/api/v1/tokens/${path(name)}`);
        if (options.json) printJson(ctx, response.text);
        else println(ctx.stdout, t`revoked token '${name}'`);
        return 0;
      }),
    );
}
