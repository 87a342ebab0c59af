import type { Command } from "commander";
import type { CommitLock } from "../../domain/deploy-guards.js";
import { parseName } from "../args.js";
import { clientFor, path, printJson, println } from "../context.js";
import { shortSha } from "../output.js";
import type { Kit } from "../program.js";
import { t, table } from "../terminal-text.js";

const locksPath = (app: string, ...rest: string[]) =>
  `/api/v1/apps/${path(app)}/commit-locks${rest.map((r) => `/${path(r)}`).join("")}`;

/** `turnout commit lock|unlock|locks`: commits marked as not deployable. */
export function registerCommitCommands(program: Command, { ctx, action, globals }: Kit): void {
  const commit = program.command("commit").description("commit locks: commits that must not be deployed");

  commit
    .command("lock")
    .description("mark a commit as not deployable: auto-deploys stop before it, manual deploys need --force")
    .argument("<app>", "app name", parseName("app"))
    .argument("<sha>", "commit SHA (full or short)")
    .requiredOption("--reason <text>", "why: shown to everyone whose deploy would ship it")
    .action(
      action(async (app: string, sha: string, flags: { reason: string }, command: Command) => {
        const options = globals(command);
        const response = await clientFor(ctx, options).post<{ lock: CommitLock }>(locksPath(app), {
          sha,
          reason: flags.reason,
        });
        const lock = response.body.lock;
        if (options.json) printJson(ctx, response.text);
        else println(ctx.stdout, t`locked commit ${shortSha(lock.sha)} of ${app}: ${lock.reason}`);
        return 0;
      }),
    );

  commit
    .command("unlock")
    .description("make a locked commit deployable again")
    .argument("<app>", "app name", parseName("app"))
    .argument("<sha>", "commit SHA (full or short)")
    .action(
      action(async (app: string, sha: string, _flags: unknown, command: Command) => {
        const options = globals(command);
        const response = await clientFor(ctx, options).delete<{ lock: CommitLock | null }>(
          locksPath(app, sha),
        );
        const lock = response.body.lock;
        if (options.json) printJson(ctx, response.text);
        else if (lock)
          println(
            ctx.stdout,
            t`unlocked commit ${shortSha(lock.sha)} of ${app} (was locked by ${lock.lockedBy}: ${lock.reason})`,
          );
        else println(ctx.stdout, t`no lock on ${sha} in ${app}`);
        return 0;
      }),
    );

  commit
    .command("locks")
    .description("the commit locks of an app")
    .argument("<app>", "app name", parseName("app"))
    .option("--all", "unlocked ones too (history)")
    .action(
      action(async (app: string, flags: { all?: boolean }, command: Command) => {
        const options = globals(command);
        const response = await clientFor(ctx, options).get<{ locks: CommitLock[] }>(
          locksPath(app),
          flags.all ? { history: "true" } : {},
        );
        if (options.json) {
          printJson(ctx, response.text);
          return 0;
        }
        const locks = response.body.locks;
        if (locks.length === 0) {
          println(ctx.stdout, t`no commit locks in ${app}`);
          return 0;
        }
        const rows = locks.map((l) => [
          shortSha(l.sha),
          l.lockedBy,
          l.lockedAt,
          l.unlockedAt ? `unlocked by ${l.unlockedBy ?? "?"} ${l.unlockedAt}` : "locked",
          l.reason,
        ]);
        println(ctx.stdout, table(["SHA", "BY", "AT", "STATE", "REASON"], rows));
        return 0;
      }),
    );
}
