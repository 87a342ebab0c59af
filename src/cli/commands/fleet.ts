import type { Command } from "commander";
import type { DeployJson } from "../api-types.js";
import { type DeployRef, parseDeployRef, parseName } from "../args.js";
import { clientFor, envPath, printJson, println } from "../context.js";
import { deployLabelOf, queuedLine } from "../output.js";
import type { Kit } from "../program.js";
import { jsonText, t } from "../terminal-text.js";
import { followAndReport } from "./follow-and-report.js";
import { fetchDeploy } from "./logs.js";

/** Fleet commands: approve / abort a canary, reconcile drifted hosts, switch a slot live. */
export function registerFleetCommands(program: Command, kit: Kit): void {
  const { ctx, action, globals } = kit;

  for (const [name, answer, text] of [
    ["approve", "approve", "let a deploy waiting after its canary go on"],
    ["abort", "abort", "stop a deploy waiting after its canary; the canary is switched back"],
  ] as const) {
    program
      .command(name)
      .description(`${text} (DEPLOY: an id, or APP/ENV#N)`)
      .argument("<deploy>", "deploy id or APP/ENV#N", parseDeployRef)
      .action(
        action(async (ref: DeployRef, _flags: unknown, command: Command) => {
          const options = globals(command);
          const client = clientFor(ctx, options);
          const id = "id" in ref ? ref.id : (await fetchDeploy(client, ref)).id;
          const response = await client.post<{ deploy: DeployJson }>(`/api/v1/deploys/${id}/${answer}`);
          if (options.json) printJson(ctx, response.text);
          else
            println(
              ctx.stdout,
              t`${answer === "approve" ? "approved" : "aborted"} ${deployLabelOf(response.body.deploy)}`,
            );
          return 0;
        }),
      );
  }

  for (const [name, description] of [
    ["reconcile", "bring drifted hosts to the environment's release"],
    ["switch", "point current where --slot points, on every host (atomically per host)"],
  ] as const) {
    const cmd = program
      .command(name)
      .description(description)
      .argument("<app>", "app name", parseName("app"))
      .argument("<env>", "environment name", parseName("environment"));
    if (name === "switch")
      cmd.requiredOption("--slot <name>", "the slot whose release becomes current", parseName("slot"));
    cmd.option("--follow", "stream the log until it finishes; exit 1 unless it succeeded").action(
      action(
        async (app: string, env: string, flags: { slot?: string; follow?: boolean }, command: Command) => {
          const options = globals(command);
          const client = clientFor(ctx, options);
          const response =
            name === "switch"
              ? await client.post<{ deploy: DeployJson }>(envPath(app, env, "switch"), { slot: flags.slot })
              : await client.post<{ deploy: DeployJson }>(envPath(app, env, "reconcile"));
          const deploy = response.body.deploy;
          if (!flags.follow) {
            if (options.json) printJson(ctx, response.text);
            else println(ctx.stdout, queuedLine(deploy));
            return 0;
          }
          if (options.json) println(ctx.stdout, jsonText(JSON.stringify({ event: "queued", deploy })));
          else println(ctx.stderr, queuedLine(deploy));
          return followAndReport(ctx, client, deploy, Boolean(options.json));
        },
      ),
    );
  }
}
