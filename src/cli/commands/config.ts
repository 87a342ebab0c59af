import path from "node:path";
import type { Command } from "commander";
import type { ConfigProblemJson, ConfigStatusJson } from "../api-types.js";
import { clientFor, printJson, println } from "../context.js";
import { clean, formatDate, problemLine } from "../output.js";
import type { Kit } from "../program.js";
import { escapeLines } from "../terminal-text.js";

// Exit statuses (program.ts): 0 all good, 1 problems found.
const OK = 0;
const PROBLEMS = 1;

export function registerConfigCommands(program: Command, { ctx, action, globals }: Kit): void {
  const config = program.command("config").description("the server's app configuration");

  config
    .command("status")
    .description(
      "active configuration revision, when it was loaded, and its problems; exits 1 when there are problems",
    )
    .action(
      action(async (_flags: unknown, command: Command) => {
        const options = globals(command);
        const response = await clientFor(ctx, options).get<ConfigStatusBody>("/api/v1/config");
        if (options.json) printJson(ctx, response.text);
        else println(ctx.stdout, escapeLines(configStatusText(response.body)));
        return configHasProblems(response.body) ? PROBLEMS : OK;
      }),
    );

  config
    .command("validate")
    .description("check the manifests of a directory offline, without a server; exits 1 on problems")
    .argument("[dir]", "the configuration directory", "turnout.d")
    .option("--check-env", "also check that the variables the manifests name are set in this environment")
    .action(
      action(async (dir: string, flags: { checkEnv?: boolean }, command: Command) => {
        // Loaded here: the YAML parser and the manifest schema are not for every `turnout` command
        // (`turnout server` parses manifests in a worker thread, never on its main thread).
        const { validateConfigDir } = await import("../../config/validate-config-dir.js");
        const report = await validateConfigDir(path.resolve(ctx.cwd, dir), {
          label: dir,
          environment: ctx.env,
          checkVariables: flags.checkEnv === true,
        });
        if (globals(command).json) {
          printJson(ctx, JSON.stringify(report));
        } else {
          for (const app of report.apps) {
            println(ctx.stdout, clean(`ok  ${app.name}  ${app.file}  (${app.environments.join(", ")})`));
          }
          for (const problem of report.problems) println(ctx.stdout, problemLine(problem));
          const files = new Set(report.problems.map((p) => p.file)).size;
          println(
            ctx.stdout,
            clean(
              report.problems.length === 0
                ? `${report.apps.length} ${report.apps.length === 1 ? "app" : "apps"}, no problems`
                : `${report.problems.length} ${report.problems.length === 1 ? "problem" : "problems"} in ${files} ${files === 1 ? "file" : "files"}`,
            ),
          );
        }
        return report.problems.length > 0 ? PROBLEMS : OK;
      }),
    );
}

/** GET /api/v1/config; `source`, `lastError` and `loading` are absent from older servers. */
export type ConfigStatusBody = ConfigStatusJson & {
  source?: { kind: "dir"; path: string } | { kind: "git"; url: string; branch: string };
  lastError?: { revision: string; at: string; problems: ConfigProblemJson[] } | null;
  loading?: { app: string; file: string }[];
};

/** Problems of the active configuration, or a head commit that could not be used. */
export function configHasProblems(status: ConfigStatusBody): boolean {
  return (status.problems?.length ?? 0) > 0 || (status.lastError ?? null) !== null;
}

export function configStatusText(status: ConfigStatusBody): string {
  const problems = status.problems ?? [];
  const lines: string[] = [];
  if (status.source) lines.push(`source     ${clean(sourceText(status.source))}`);
  lines.push(
    // A configuration repository whose every commit so far was refused has no active revision.
    `revision   ${status.revision ? clean(status.revision) : "(none)"}`,
    `loaded at  ${formatDate(status.loadedAt)}`,
  );
  const loading = status.loading ?? [];
  if (loading.length > 0) lines.push(`loading    ${clean(loading.map((l) => l.file).join(", "))}`);
  lines.push(problems.length === 0 ? "problems   none" : `problems   ${problems.length}`);
  for (const problem of problems) lines.push(`  ${problemLine(problem)}`);
  const refused = status.lastError;
  if (refused) {
    lines.push(`last refused: ${clean(refused.revision.slice(0, 12))} at ${formatDate(refused.at)}`);
    for (const problem of refused.problems) lines.push(`  ${problemLine(problem)}`);
  }
  return lines.join("\n");
}

function sourceText(source: NonNullable<ConfigStatusBody["source"]>): string {
  return source.kind === "git" ? `git ${source.url}@${source.branch}` : `directory ${source.path}`;
}
