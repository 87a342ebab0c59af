import { type Command, Option } from "commander";
import { InvalidSettingError } from "../../config/client-settings.js";
import { ROLES } from "../../domain/roles.js";
import type { TokenInfoJson } from "../api-types.js";
import { collectGrantLabel, collectName, parseName } from "../args.js";
import { clientFor, path, printJson, println } from "../context.js";
import { grantText, tokensTable } from "../output.js";
import type { Kit } from "../program.js";
import { escapeText, t } from "../terminal-text.js";

export function registerTokenCommands(program: Command, { ctx, action, globals }: Kit): void {
  const token = program.command("token").description("API tokens (admin)");

  token
    .command("create")
    .description("create a token; it is printed once and cannot be shown again")
    .argument("<name>", "token name", parseName("token"))
    .addOption(new Option("--role <role>", "what the token may do").choices(ROLES).makeOptionMandatory())
    .option(
      "--app <app>",
      "limit the token to an app, repeatable (default: every app); an agent token grants its apps to its hosts",
      collectName("app"),
    )
    .option(
      "--label <key=value>",
      "agent tokens: a label its hosts are granted, repeatable (default: none; other labels a host declares are ignored)",
      collectGrantLabel,
    )
    .option(
      "--any-labels",
      "agent tokens: every label a host declares counts (unrestricted; not recommended)",
    )
    .addHelpText(
      "after",
      "\nAn agent token decides what the hosts enrolled with it may receive: deploys (and secret_env) of its" +
        "\napps only, selected by its labels only. Example:" +
        "\n  turnout token create shop-web-hosts --role agent --app shop --label role=web --label env=prod\n",
    )
    .action(
      action(
        async (
          name: string,
          flags: { role: string; app?: string[]; label?: string[]; anyLabels?: boolean },
          command: Command,
        ) => {
          const options = globals(command);
          if ((flags.label || flags.anyLabels) && flags.role !== "agent") {
            throw new InvalidSettingError("--label and --any-labels are for agent tokens (--role agent)");
          }
          if (flags.label && flags.anyLabels)
            throw new InvalidSettingError("give --label or --any-labels, not both");
          const body: Record<string, unknown> = { name, role: flags.role };
          if (flags.app) body["apps"] = flags.app;
          if (flags.label) body["labels"] = flags.label;
          if (flags.anyLabels) body["labels"] = null;
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
          const { info } = response.body;
          const scope =
            info.role === "agent"
              ? `grants ${grantText({ apps: info.apps, labels: info.labels ?? null })}`
              : info.apps
                ? `apps: ${info.apps.join(", ")}`
                : "every app";
          println(
            ctx.stderr,
            t`created token '${name}' (${flags.role}, ${scope}); it is shown only this once`,
          );
          return 0;
        },
      ),
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
