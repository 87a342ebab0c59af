import { type Command, Option } from "commander";
import type { DeployJson } from "../api-types.js";
import { collectComponentRef, collectParam, parseName, parsePositiveInt } from "../args.js";
import { clientFor, envPath, printJson, println } from "../context.js";
import { outcomeLine, queuedLine } from "../output.js";
import type { Kit } from "../program.js";
import { jsonText } from "../terminal-text.js";
import { waitForDeploy } from "../wait.js";
import { emergencyBody } from "./emergency.js";
import { followAndReport } from "./follow-and-report.js";

export function registerDeployCommands(program: Command, kit: Kit): void {
  const { ctx, action, globals } = kit;

  program
    .command("deploy")
    .description("deploy a ref (default: the environment's branch) to an environment")
    .argument("<app>", "app name", parseName("app"))
    .argument("<env>", "environment name", parseName("environment"))
    .argument("[ref]", "branch, tag or commit SHA")
    .option("--force", "deploy past a lock (admin only), outside the deploy windows or past a locked commit")
    .option(
      "--reason <text>",
      "why (recorded): required with --from-dir, to --force outside the deploy windows, and for an admin's direct deploy where promotion is required",
    )
    .option("--param <name=value>", "deploy parameter, repeatable", collectParam)
    .option(
      "--component <name=ref>",
      "multi-repo apps: ref of another component, repeatable",
      collectComponentRef,
    )
    .option("--slot <name>", "fleets: point this slot instead of current", parseName("slot"))
    .option("--artifact <digest>", "fleets: deploy this uploaded artifact instead of building")
    .option(
      "--from-dir <path>",
      "emergency deploy of this working tree (fleets where allow_emergency permits it; needs --reason)",
    )
    .option("--follow", "stream the log until the deploy finishes; exit 1 unless it succeeded")
    .addOption(waitOption("deploy"))
    .action(
      action(
        async (
          app: string,
          env: string,
          ref: string | undefined,
          flags: {
            force?: boolean;
            reason?: string;
            param?: Record<string, string>;
            component?: Record<string, string>;
            slot?: string;
            artifact?: string;
            follow?: boolean;
            wait?: boolean;
            fromDir?: string;
          },
          command: Command,
        ) => {
          const options = globals(command);
          const client = clientFor(ctx, options);
          if (flags.fromDir !== undefined) {
            const emergency = await emergencyBody(kit, client, app, { ...flags, ref }, Boolean(options.json));
            const response = await client.post<{ deploy: DeployJson }>(
              envPath(app, env, "deploys"),
              emergency,
            );
            return queuedThenMaybeFollow(kit, client, response, Boolean(options.json), flags);
          }
          const body: Record<string, unknown> = { trigger: "cli" };
          if (ref !== undefined) body["ref"] = ref;
          if (flags.force) body["force"] = true;
          if (flags.reason !== undefined) body["reason"] = flags.reason;
          if (flags.param && Object.keys(flags.param).length > 0) body["params"] = flags.param;
          if (flags.component && Object.keys(flags.component).length > 0) body["refs"] = flags.component;
          if (flags.slot) body["slot"] = flags.slot;
          if (flags.artifact) body["artifact"] = flags.artifact;
          const response = await client.post<{ deploy: DeployJson }>(envPath(app, env, "deploys"), body);
          return queuedThenMaybeFollow(kit, client, response, Boolean(options.json), flags);
        },
      ),
    );

  program
    .command("rollback")
    .description("bring back an earlier release (default: the one before the current)")
    .argument("<app>", "app name", parseName("app"))
    .argument("<env>", "environment name", parseName("environment"))
    .option("--to <n>", "deploy number whose release to bring back", parsePositiveInt)
    .option("--force", "roll back past a lock (admin only)")
    .option("--follow", "stream the log until the rollback finishes; exit 1 unless it succeeded")
    .addOption(waitOption("rollback"))
    .action(
      action(
        async (
          app: string,
          env: string,
          flags: { to?: number; force?: boolean; follow?: boolean; wait?: boolean },
          command: Command,
        ) => {
          const options = globals(command);
          const client = clientFor(ctx, options);
          const body: Record<string, unknown> = {};
          if (flags.to !== undefined) body["to"] = flags.to;
          if (flags.force) body["force"] = true;
          const response = await client.post<{ deploy: DeployJson }>(envPath(app, env, "rollback"), body);
          return queuedThenMaybeFollow(kit, client, response, Boolean(options.json), flags);
        },
      ),
    );
}

/** `--wait`: the exit status of the deploy, without its log (`--follow` shows the log too). */
export function waitOption(what: string): Option {
  return new Option(
    "--wait",
    `wait until the ${what} finishes, quietly; exit 0 if it succeeded, 1 if it failed or was cancelled`,
  ).conflicts("follow");
}

export async function queuedThenMaybeFollow(
  { ctx }: Kit,
  client: Parameters<typeof followAndReport>[1],
  response: { text: string; body: { deploy: DeployJson } },
  json: boolean,
  { follow, wait }: { follow?: boolean | undefined; wait?: boolean | undefined },
): Promise<number> {
  const deploy = response.body.deploy;
  if (wait) {
    // Quiet: no log, no progress; the outcome line on stderr (the deploy as JSON on stdout with --json).
    const final = await waitForDeploy(client, deploy);
    if (json) println(ctx.stdout, jsonText(JSON.stringify({ deploy: final })));
    else println(ctx.stderr, outcomeLine(final));
    return final.status === "succeeded" ? 0 : 1;
  }
  if (!follow) {
    if (json) printJson(ctx, response.text);
    else println(ctx.stdout, queuedLine(deploy));
    return 0;
  }
  if (json) println(ctx.stdout, jsonText(JSON.stringify({ event: "queued", deploy })));
  else println(ctx.stderr, queuedLine(deploy));
  return followAndReport(ctx, client, deploy, json);
}
