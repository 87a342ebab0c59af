/**
 * Chat commands (`/turnout deploy shop production main`): the text a person
 * typed, parsed strictly into one command. Names pass the name rule, refs the
 * revision rule, numbers are whole and positive; anything more or less than a
 * command takes is refused with its usage, so a typo never runs something
 * else. No I/O.
 */
import { parseDeployLabel } from "./deploy.js";
import { TurnoutError } from "./errors.js";
import { assertName } from "./names.js";
import { assertRevision } from "./refs.js";

export type ChatCommand =
  | { kind: "help" }
  | { kind: "deploy"; app: string; env: string; ref?: string }
  | { kind: "status"; app?: string }
  | { kind: "lock"; app: string; env: string; reason: string }
  | { kind: "unlock"; app: string; env: string }
  | { kind: "rollback"; app: string; env: string; to?: number }
  | { kind: "approve"; deploy: number | { app: string; env: string; number: number } };

export const CHAT_USAGE: Record<Exclude<ChatCommand["kind"], "help">, string> = {
  deploy: "deploy APP ENV [REF]",
  status: "status [APP]",
  lock: "lock APP ENV REASON",
  unlock: "unlock APP ENV",
  rollback: "rollback APP ENV [NUMBER]",
  approve: "approve DEPLOY (an id or APP/ENV#N)",
};

/** As the HTTP API allows for a lock's reason. */
const MAX_REASON = 500;
/** Longer text is no command anyone typed. */
const MAX_TEXT = 1000;

/**
 * Slack escapes `&`, `<` and `>` in the text it sends (and nothing else);
 * undone here so a reason reads as it was typed. `&amp;` last, so `&amp;lt;`
 * stays `&lt;`.
 */
export function unescapeSlackText(text: string): string {
  return text.replaceAll("&lt;", "<").replaceAll("&gt;", ">").replaceAll("&amp;", "&");
}

export function parseChatCommand(input: string): ChatCommand {
  const text = input.trim();
  if (text.length > MAX_TEXT) throw usageError(`the command is longer than ${MAX_TEXT} characters`);
  const words = text === "" ? [] : text.split(/\s+/);
  const [verb, ...args] = words;
  switch (verb) {
    case undefined:
    case "help":
      return { kind: "help" };
    case "deploy": {
      arity("deploy", args, 2, 3);
      return {
        kind: "deploy",
        app: assertName("app", args[0]),
        env: assertName("environment", args[1]),
        ...(args[2] !== undefined ? { ref: assertRevision(args[2]) } : {}),
      };
    }
    case "status":
      arity("status", args, 0, 1);
      return args[0] === undefined ? { kind: "status" } : { kind: "status", app: assertName("app", args[0]) };
    case "lock": {
      if (args.length < 3) throw usage("lock");
      const app = assertName("app", args[0]);
      const env = assertName("environment", args[1]);
      // The reason is the rest of the line, spacing as typed.
      const reason = text.replace(/^lock\s+\S+\s+\S+\s+/, "").trim();
      if (reason.length > MAX_REASON) throw usageError(`the reason is longer than ${MAX_REASON} characters`);
      return { kind: "lock", app, env, reason };
    }
    case "unlock":
      arity("unlock", args, 2, 2);
      return { kind: "unlock", app: assertName("app", args[0]), env: assertName("environment", args[1]) };
    case "rollback": {
      arity("rollback", args, 2, 3);
      return {
        kind: "rollback",
        app: assertName("app", args[0]),
        env: assertName("environment", args[1]),
        ...(args[2] !== undefined ? { to: deployNumber(args[2]) } : {}),
      };
    }
    case "approve": {
      arity("approve", args, 1, 1);
      const target = args[0]!;
      if (/^[0-9]{1,9}$/.test(target)) return { kind: "approve", deploy: deployNumber(target) };
      const label = parseDeployLabel(target);
      if (!label || label.number < 1) throw usage("approve");
      return { kind: "approve", deploy: label };
    }
    default:
      throw usageError(`unknown command ${JSON.stringify(verb.slice(0, 40))}`);
  }
}

/** The help text: every command with its arguments. */
export function chatHelp(command = "/turnout"): string {
  return ["Commands:", ...Object.values(CHAT_USAGE).map((u) => `• ${command} ${u}`)].join("\n");
}

function arity(kind: keyof typeof CHAT_USAGE, args: string[], min: number, max: number): void {
  if (args.length < min || args.length > max) throw usage(kind);
}

function deployNumber(text: string): number {
  const n = Number(text);
  if (!/^[0-9]{1,9}$/.test(text) || n < 1) {
    throw new TurnoutError("E_BAD_REQUEST", `not a deploy number: ${JSON.stringify(text.slice(0, 40))}`);
  }
  return n;
}

function usage(kind: keyof typeof CHAT_USAGE): TurnoutError {
  return usageError(`usage: ${CHAT_USAGE[kind]}`);
}

function usageError(message: string): TurnoutError {
  return new TurnoutError("E_BAD_REQUEST", message);
}
