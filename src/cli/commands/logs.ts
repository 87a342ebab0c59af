import type { Command } from "commander";
import type { ApiClient } from "../api-client.js";
import type { DeployJson, LogChunk, LogResponse } from "../api-types.js";
import { type DeployRef, parseDeployRef } from "../args.js";
import { clientFor, envPath, printJson, println } from "../context.js";
import { deployLabelOf, formatDate } from "../output.js";
import type { Kit } from "../program.js";
import { LogTextFilter, type TerminalText, t } from "../terminal-text.js";
import { followAndReport } from "./follow-and-report.js";

/** `17` or `shop/staging#4` → the deploy, through the API. */
export async function fetchDeploy(client: ApiClient, ref: DeployRef): Promise<DeployJson> {
  const path =
    "id" in ref ? `/api/v1/deploys/${ref.id}` : envPath(ref.app, ref.env, "deploys", String(ref.number));
  return (await client.get<{ deploy: DeployJson }>(path)).body.deploy;
}

export function registerLogsCommands(program: Command, { ctx, action, globals }: Kit): void {
  program
    .command("logs")
    .description("print a deploy's log (DEPLOY: an id, or APP/ENV#N)")
    .argument("<deploy>", "deploy id or APP/ENV#N", parseDeployRef)
    .option("--follow", "keep streaming until the deploy finishes; exit 1 unless it succeeded")
    .action(
      action(async (ref: DeployRef, flags: { follow?: boolean }, command: Command) => {
        const options = globals(command);
        const client = clientFor(ctx, options);
        const id = "id" in ref ? ref.id : (await fetchDeploy(client, ref)).id;
        if (flags.follow) {
          const deploy = await fetchDeploy(client, { id });
          if (deploy.logPrunedAt && !options.json) println(ctx.stderr, prunedNote(deploy.logPrunedAt));
          return followAndReport(ctx, client, deploy, Boolean(options.json));
        }
        const log = await readWholeLog(client, id);
        if (options.json) printJson(ctx, JSON.stringify(log));
        else {
          // Colour stays; other escape sequences and controls are shown escaped (terminal-text.ts).
          const filter = new LogTextFilter();
          ctx.stdout.write(filter.push(log.chunks.map((c) => c.text).join("")));
          ctx.stdout.write(filter.end());
          if (log.prunedAt) println(ctx.stderr, prunedNote(log.prunedAt));
        }
        return 0;
      }),
    );

  program
    .command("cancel")
    .description("cancel a queued or running deploy (DEPLOY: an id, or APP/ENV#N)")
    .argument("<deploy>", "deploy id or APP/ENV#N", parseDeployRef)
    .action(
      action(async (ref: DeployRef, _flags: unknown, command: Command) => {
        const options = globals(command);
        const client = clientFor(ctx, options);
        const id = "id" in ref ? ref.id : (await fetchDeploy(client, ref)).id;
        const response = await client.post<{ deploy: DeployJson }>(`/api/v1/deploys/${id}/cancel`);
        const deploy = response.body.deploy;
        if (options.json) printJson(ctx, response.text);
        else if (deploy.status === "cancelled") println(ctx.stdout, t`cancelled ${deployLabelOf(deploy)}`);
        else println(ctx.stdout, t`cancel requested for ${deployLabelOf(deploy)} (${deploy.status})`);
        return 0;
      }),
    );
}

/** On stderr, so stdout stays the log (empty here). */
function prunedNote(at: string): TerminalText {
  return t`log removed by retention on ${formatDate(at)}; the deploy's record is kept (turnout history, the API)`;
}

/**
 * The log endpoint answers in pages; one document of every chunk keeps
 * `--json` a single value whatever the log's size.
 */
async function readWholeLog(client: ApiClient, id: number): Promise<LogResponse> {
  const chunks: LogChunk[] = [];
  let offset = 0;
  for (;;) {
    const { body } = await client.get<LogResponse>(`/api/v1/deploys/${id}/log`, { offset });
    chunks.push(...body.chunks);
    const next = typeof body.nextOffset === "number" ? body.nextOffset : offset;
    if (body.chunks.length === 0 || next <= offset) {
      return {
        chunks,
        nextOffset: next,
        complete: body.complete,
        status: body.status,
        prunedAt: body.prunedAt ?? null,
      };
    }
    offset = next;
  }
}
