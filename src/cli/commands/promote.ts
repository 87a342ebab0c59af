import type { Command } from "commander";
import type { DeployJson } from "../api-types.js";
import { parseName, parsePositiveInt } from "../args.js";
import { clientFor, envPath, path, printJson, println } from "../context.js";
import { formatDate, formatDuration, shortSha } from "../output.js";
import type { Kit } from "../program.js";
import { joinLines, type TerminalText, t, table } from "../terminal-text.js";
import { queuedThenMaybeFollow, waitOption } from "./deploy.js";

/** What `GET /apps/:app/pipeline` answers (src/engine/pipeline-view.ts). */
interface PipelineJson {
  app: string;
  stages: {
    env: string;
    gate: {
      bakeMs: number;
      approval: { role: string; timeoutMs: number } | null;
      checks: { required: string[]; command: boolean } | null;
    } | null;
    current: { deployNumber: number; sha: string; since: string } | null;
  }[];
  releases: {
    sha: string;
    stages: { env: string; state: string | null; waitingOn: string | null; runId: number | null }[];
  }[];
  runs: {
    id: number;
    env: string;
    fromEnv: string;
    sourceNumber: number;
    sha: string;
    status: string;
    waitingOn: string | null;
    approvalDeadline: string | null;
    decidedBy: string | null;
    message: string | null;
    deployId: number | null;
    updatedAt: string;
  }[];
}

export function registerPromoteCommands(program: Command, kit: Kit): void {
  const { ctx, action, globals } = kit;

  program
    .command("promote")
    .description("deploy to an environment exactly the release another one runs")
    .argument("<app>", "app name", parseName("app"))
    .requiredOption("--from <env>", "the environment whose live release to promote", parseName("environment"))
    .requiredOption("--to <env>", "the environment to deploy it to", parseName("environment"))
    .option("--force", "promote past a lock (admin only)")
    .option("--reason <text>", "why (recorded with the deploy)")
    .option("--follow", "stream the log until the deploy finishes; exit 1 unless it succeeded")
    .addOption(waitOption("promotion"))
    .action(
      action(
        async (
          app: string,
          flags: {
            from: string;
            to: string;
            force?: boolean;
            reason?: string;
            follow?: boolean;
            wait?: boolean;
          },
          command: Command,
        ) => {
          const options = globals(command);
          const client = clientFor(ctx, options);
          const body: Record<string, unknown> = { from: flags.from };
          if (flags.force) body["force"] = true;
          if (flags.reason !== undefined) body["reason"] = flags.reason;
          const response = await client.post<{ deploy: DeployJson }>(envPath(app, flags.to, "promote"), body);
          return queuedThenMaybeFollow(kit, client, response, Boolean(options.json), flags);
        },
      ),
    );

  const pipeline = program
    .command("pipeline")
    .description("an app's release pipeline: stages, gates and where each release is (approve|reject a run)")
    .argument("<app>", "app name", parseName("app"))
    .action(
      action(async (app: string, _flags: unknown, command: Command) => {
        const options = globals(command);
        const response = await clientFor(ctx, options).get<{ pipeline: PipelineJson }>(
          `/api/v1/apps/${path(app)}/pipeline`,
        );
        if (options.json) printJson(ctx, response.text);
        else println(ctx.stdout, pipelineText(response.body.pipeline));
        return 0;
      }),
    );

  for (const answer of ["approve", "reject"] as const) {
    pipeline
      .command(answer)
      .description(`${answer} a pipeline run waiting for approval`)
      .argument("<app>", "app name", parseName("app"))
      .option("--run <id>", "the run (see `turnout pipeline APP`)", parsePositiveInt)
      .option("--stage <env>", "or: the stage the run waits to enter", parseName("environment"))
      .option("--message <text>", "why (recorded)")
      .action(
        action(
          async (
            app: string,
            flags: { run?: number; stage?: string; message?: string },
            command: Command,
          ) => {
            const options = globals(command);
            const body: Record<string, unknown> = {};
            if (flags.run !== undefined) body["run"] = flags.run;
            if (flags.stage !== undefined) body["stage"] = flags.stage;
            if (flags.message !== undefined) body["message"] = flags.message;
            const response = await clientFor(ctx, options).post<{ run: PipelineJson["runs"][number] }>(
              `/api/v1/apps/${path(app)}/pipeline/${answer}`,
              body,
            );
            const run = response.body.run;
            if (options.json) printJson(ctx, response.text);
            else
              println(
                ctx.stdout,
                t`${answer === "approve" ? "approved" : "rejected"} run ${run.id}: ${app}/${run.fromEnv}#${run.sourceNumber} (${shortSha(run.sha)}) → ${run.env}`,
              );
            return 0;
          },
        ),
      );
  }
}

function gateText(gate: PipelineJson["stages"][number]["gate"]): string {
  if (!gate) return "-";
  const parts: string[] = [];
  if (gate.bakeMs > 0) parts.push(`bake ${formatDuration(gate.bakeMs)}`);
  if (gate.checks)
    parts.push(`checks ${[...gate.checks.required, ...(gate.checks.command ? ["command"] : [])].join("+")}`);
  if (gate.approval)
    parts.push(`approval by ${gate.approval.role} (${formatDuration(gate.approval.timeoutMs)})`);
  return parts.length > 0 ? parts.join(", ") : "auto";
}

function stateText(state: { state: string | null; waitingOn: string | null }): string {
  if (state.state === null) return "-";
  if (state.state === "waiting" && state.waitingOn) return `waiting (${state.waitingOn})`;
  return state.state;
}

/** The stages (gate, what runs there), each release's position, and runs that stopped, with why. */
export function pipelineText(p: PipelineJson): TerminalText {
  if (p.stages.length === 0) return t`${p.app} has no pipeline`;
  const lines: TerminalText[] = [];
  lines.push(
    table(
      ["STAGE", "GATE", "RUNS", "SINCE"],
      p.stages.map((s) => [
        s.env,
        gateText(s.gate),
        s.current ? `#${s.current.deployNumber} ${shortSha(s.current.sha)}` : "-",
        s.current ? formatDate(s.current.since) : "-",
      ]),
    ),
  );
  if (p.releases.length > 0) {
    lines.push(t``);
    lines.push(
      table(
        ["RELEASE", ...p.stages.map((s) => s.env.toUpperCase())],
        p.releases.map((r) => [shortSha(r.sha), ...r.stages.map(stateText)]),
      ),
    );
  }
  const notes = p.runs
    .filter((r) => r.message !== null || r.status === "waiting" || r.status === "approved")
    .slice(0, 10);
  if (notes.length > 0) lines.push(t``);
  for (const run of notes) {
    const waiting =
      run.waitingOn === "approval" && run.approvalDeadline
        ? ` until ${formatDate(run.approvalDeadline)}`
        : "";
    lines.push(
      t`run ${run.id}: ${p.app}/${run.fromEnv}#${run.sourceNumber} → ${run.env}: ${stateText({ state: run.status, waitingOn: run.waitingOn })}${waiting}${run.message ? ` — ${run.message}` : ""}`,
    );
  }
  return joinLines(lines);
}
