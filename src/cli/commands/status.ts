import type { Command } from "commander";
import type { AppSummary, AppsResponse, EnvDetail } from "../api-types.js";
import { parseName } from "../args.js";
import { clientFor, envPath, path, printJson, println } from "../context.js";
import {
  deployLabelOf,
  emergencyText,
  environmentsTable,
  formatDate,
  lockText,
  shortSha,
  stateText,
  table,
} from "../output.js";
import type { Kit } from "../program.js";
import { indent, joinLines, type TerminalText, t } from "../terminal-text.js";

export function registerStatusCommands(program: Command, { ctx, action, globals }: Kit): void {
  const overview = async (command: Command) => {
    const options = globals(command);
    const response = await clientFor(ctx, options).get<AppsResponse>("/api/v1/apps");
    if (options.json) return printJson(ctx, response.text);
    println(ctx.stdout, environmentsTable(response.body.apps.flatMap((app) => app.environments)));
    const problems = response.body.problems?.length ?? 0;
    if (problems > 0) {
      println(ctx.stderr, t`warning: ${problems} configuration problem(s); see: turnout config status`);
    }
  };

  program
    .command("apps")
    .description("apps and the state of their environments")
    .action(
      action(async (_options: unknown, command: Command) => {
        await overview(command);
        return 0;
      }),
    );

  program
    .command("status")
    .description("what runs where: every environment, one app's, or one environment in detail")
    .argument("[app]", "app name", parseName("app"))
    .argument("[env]", "environment name", parseName("environment"))
    .action(
      action(
        async (app: string | undefined, env: string | undefined, _options: unknown, command: Command) => {
          const options = globals(command);
          if (app === undefined) {
            await overview(command);
            return 0;
          }
          const client = clientFor(ctx, options);
          if (env === undefined) {
            const response = await client.get<{ app: AppSummary }>(`/api/v1/apps/${path(app)}`);
            if (options.json) printJson(ctx, response.text);
            else println(ctx.stdout, environmentsTable(response.body.app.environments));
            return 0;
          }
          const response = await client.get<{ environment: EnvDetail }>(envPath(app, env));
          if (options.json) printJson(ctx, response.text);
          else println(ctx.stdout, environmentDetail(response.body.environment));
          return 0;
        },
      ),
    );
}

export function environmentDetail(env: EnvDetail): TerminalText {
  const facts = table(null, [
    ["branch", `${env.branch}${env.autoDeploy ? " (auto-deploy)" : ""}`],
    ["provider", env.provider],
    [
      "current",
      env.current
        ? `#${env.current.deployNumber} ${shortSha(env.current.sha)} since ${formatDate(env.current.createdAt)}`
        : "-",
    ],
    // Only when it does: an emergency change nobody reviewed is live here.
    ...(env.unreviewed ? [["unreviewed", emergencyText(env.unreviewed)]] : []),
    ["state", stateText(env)],
    ["lock", env.lock ? `${lockText(env.lock)} (since ${formatDate(env.lock.createdAt)})` : "-"],
  ]);
  const lines: TerminalText[] = [t`${env.app}/${env.name}`, indent(facts, "  ")];
  const deploys = [...(env.queue ?? []), ...(env.recent ?? [])];
  const seen = new Set<number>();
  const rows = deploys
    .filter((d) => !seen.has(d.id) && seen.add(d.id))
    .map((d) => [
      `#${d.number}`,
      d.status,
      shortSha(d.sha),
      d.ref,
      d.user,
      // A promotion says where its release came from: `promote (staging#31)`.
      d.promotedFrom ? `${d.trigger} (${d.promotedFrom.env}#${d.promotedFrom.deployNumber})` : d.trigger,
      formatDate(d.createdAt),
    ]);
  if (rows.length > 0) {
    lines.push(t``, t`deploys:`);
    lines.push(indent(table(["DEPLOY", "STATUS", "SHA", "REF", "USER", "TRIGGER", "CREATED"], rows), "  "));
  }
  if (env.active)
    lines.push(t``, t`follow the active deploy: turnout logs ${deployLabelOf(env.active)} --follow`);
  return joinLines(lines);
}
