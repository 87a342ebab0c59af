import type { ApiClient } from "../api-client.js";
import type { DeployJson } from "../api-types.js";
import type { CliContext } from "../context.js";
import { println } from "../context.js";
import { followDeploy } from "../follow.js";
import { outcomeLine } from "../output.js";

/**
 * `--follow`: stdout carries the deploy's log exactly (so `> deploy.log` keeps
 * a clean copy) and everything Turnout itself says goes to stderr. Exit 0 only
 * for a deploy that succeeded.
 */
export async function followAndReport(
  ctx: CliContext,
  client: ApiClient,
  deploy: DeployJson,
  json: boolean,
): Promise<number> {
  const final = await followDeploy({
    client,
    deployId: deploy.id,
    stdout: ctx.stdout,
    stderr: ctx.stderr,
    json,
    initial: deploy,
  });
  if (!json) println(ctx.stderr, outcomeLine(final));
  return final.status === "succeeded" ? 0 : 1;
}
