import type { AppConfig } from "../../domain/app-config.js";
import { type ChatCommand, chatHelp } from "../../domain/chat-command.js";
import { type Deploy, deployLabel } from "../../domain/deploy.js";
import { TurnoutError } from "../../domain/errors.js";
import { authorize, type Principal, visibleApps } from "../../domain/roles.js";
import type { EngineApi } from "../../engine/api.js";
import type { Store } from "../../store/store.js";
import type { EnvSummaryJson } from "../api-types.js";
import { appSummaries } from "../serializers.js";

/**
 * Runs one chat command as a principal through the engine, which checks the
 * principal's permissions as for any API call, and words the outcome for
 * people. Chat front ends (Slack today) only verify, map the user and post.
 */
export interface ChatReply {
  /** `channel`: everyone in the channel sees it (what was done); `private`: only the one who asked. */
  visibility: "channel" | "private";
  text: string;
  /** A deploy whose progress is worth following in the channel. */
  follow?: Deploy;
}

export async function runChatCommand(
  engine: EngineApi,
  store: Store,
  principal: Principal,
  command: ChatCommand,
): Promise<ChatReply> {
  switch (command.kind) {
    case "help":
      return { visibility: "private", text: chatHelp() };
    case "deploy": {
      const deploy = await engine.requestDeploy(principal, {
        app: command.app,
        env: command.env,
        ref: command.ref,
        trigger: "chat",
      });
      return {
        visibility: "channel",
        text: `${principal.name} requested ${describe(deploy)}: ${deploy.status}`,
        follow: deploy,
      };
    }
    case "rollback": {
      const deploy = await engine.requestRollback(principal, {
        app: command.app,
        env: command.env,
        to: command.to,
      });
      const to = deploy.rollbackOf !== null ? ` to #${deploy.rollbackOf}` : "";
      return {
        visibility: "channel",
        text: `${principal.name} requested a rollback${to}: ${describe(deploy)}: ${deploy.status}`,
        follow: deploy,
      };
    }
    case "lock": {
      const lock = await engine.lock(principal, command.app, command.env, command.reason);
      return {
        visibility: "channel",
        text: `${lock.app}/${lock.env} locked by ${lock.lockedBy}: ${lock.reason}`,
      };
    }
    case "unlock": {
      const lock = await engine.unlock(principal, command.app, command.env);
      return {
        visibility: "channel",
        text: lock
          ? `${command.app}/${command.env} unlocked by ${principal.name}`
          : `${command.app}/${command.env} was not locked`,
      };
    }
    case "approve": {
      const found = await engine.findDeploy(principal, command.deploy, "deploy");
      const deploy = await engine.answerApproval(principal, found.id, "approved");
      return {
        visibility: "channel",
        text: `${principal.name} approved ${deployLabel(deploy)}: the rest of the fleet follows`,
        follow: deploy,
      };
    }
    case "status":
      return { visibility: "private", text: await status(engine, store, principal, command.app) };
  }
}

/** A refusal as people read it, with the stable code so they can look it up. */
export function refusalText(error: unknown): string {
  if (error instanceof TurnoutError && error.code !== "E_INTERNAL") {
    return `Refused (${error.code}): ${error.message}`;
  }
  // Internal errors carry operators' details; the person in the channel gets the code only.
  return "Failed (E_INTERNAL): the server could not do that; the operators' log says why";
}

/** A deploy in one line: label, the commit (short) and what was asked for. */
export function describe(deploy: Deploy): string {
  const subject = deploy.commit?.subject ? ` "${oneLine(deploy.commit.subject)}"` : "";
  return `${deployLabel(deploy)} (${deploy.sha.slice(0, 7)} from ${deploy.ref}${subject}) [deploy ${deploy.id}]`;
}

async function status(
  engine: EngineApi,
  store: Store,
  principal: Principal,
  app: string | undefined,
): Promise<string> {
  let apps: AppConfig[];
  if (app !== undefined) {
    apps = [engine.app(principal, app, "read")];
  } else {
    authorize(principal, "read");
    const config = engine.config();
    apps = visibleApps(principal, [...config.apps.keys()].sort()).map((name) => config.apps.get(name)!);
  }
  if (apps.length === 0) return "No apps you may see.";
  const summaries = await appSummaries(store, apps);
  const lines: string[] = [];
  for (const summary of summaries) {
    for (const env of summary.environments) lines.push(envLine(env));
  }
  return lines.join("\n");
}

function envLine(env: EnvSummaryJson): string {
  const parts = [`${env.app}/${env.name}:`];
  parts.push(
    env.current ? `${env.current.sha.slice(0, 7)} (#${env.current.deployNumber})` : "nothing deployed yet",
  );
  if (env.active) parts.push(`· ${env.active.label} ${env.active.status}`);
  if (env.queued > 0) parts.push(`· ${env.queued} queued`);
  if (env.lock) parts.push(`· locked by ${env.lock.lockedBy}: ${oneLine(env.lock.reason)}`);
  return parts.join(" ");
}

function oneLine(text: string): string {
  const line = text.replace(/\s+/g, " ").trim();
  return line.length > 80 ? `${line.slice(0, 79)}…` : line;
}
