import type { Trigger } from "./deploy.js";

/**
 * Where a mutating action came from, as the audit trail records it: the API
 * (the web UI included), the command-line client, a chat command, a webhook
 * or push, or the server's own schedule (polling, auto-deploys, self-heal,
 * configuration reloads).
 */
export const AUDIT_SOURCES = ["api", "cli", "chat", "webhook", "schedule"] as const;
export type AuditSource = (typeof AUDIT_SOURCES)[number];

/** The actions the server records; details per action are in docs/operations.md. */
export const AUDIT_ACTIONS = [
  "deploy",
  "rollback",
  "deploy.cancel",
  "deploy.approve",
  "deploy.abort",
  "lock",
  "unlock",
  "token.create",
  "token.revoke",
  "host.grant",
  "config.reload",
  "push",
  "webhook",
] as const;

/** Who did it: the token's name (and id and role when a token did it), and from where. */
export interface AuditActor {
  name: string;
  /** The token's id; null for the server itself (schedule) and for unauthenticated sources. */
  tokenId: number | null;
  role: string | null;
  source: AuditSource;
}

/** The caller of a request or command, as recorded (an HTTP caller counts as the API unless it says otherwise). */
export function auditActor(principal: {
  tokenId: number;
  name: string;
  role: string;
  source?: AuditSource;
}): AuditActor {
  return {
    name: principal.name,
    tokenId: principal.tokenId > 0 ? principal.tokenId : null,
    role: principal.role,
    source: principal.source ?? "api",
  };
}

/** The server acting on its own (polling, auto-deploys, self-heal, reloading its configuration). */
export function scheduleActor(name: string): AuditActor {
  return { name, tokenId: null, role: null, source: "schedule" };
}

/** For deploys created without an actor: where their trigger says they came from. */
export function sourceOfTrigger(trigger: Trigger): AuditSource {
  switch (trigger) {
    case "cli":
      return "cli";
    case "chat":
      return "chat";
    case "webhook":
    case "push":
      return "webhook";
    case "auto":
      return "schedule";
    default:
      return "api";
  }
}

export function isAuditSource(value: string): value is AuditSource {
  return (AUDIT_SOURCES as readonly string[]).includes(value);
}
