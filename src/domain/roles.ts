import type { AuditSource } from "./audit.js";
import { appNotFound, TurnoutError } from "./errors.js";

/**
 * `agent` tokens are for hosts only: they enroll an agent (which gets a host
 * token of its own) and read nothing. Host tokens act with the `agent` role
 * too and read only what the server sent to their host (artifacts/read-access).
 */
export const ROLES = ["viewer", "deployer", "admin", "agent"] as const;
export type Role = (typeof ROLES)[number];

/** What a caller is: resolved from a bearer token by the store, checked here. */
export interface Principal {
  tokenId: number;
  name: string;
  role: Role;
  /** null: every app. */
  apps: string[] | null;
  /** An agent (enrollment) token: the labels hosts enrolled with it are granted (null: what they declare). */
  labels?: string[] | null;
  /** A host token: the host it belongs to. */
  host?: { id: number; name: string };
  /** Short-lived tokens (browser sign-ins): when the token stops working. */
  expiresAt?: string | null;
  /**
   * Where the caller's request came from, for the audit trail: the HTTP layer
   * sets "api" (or "cli" when the command-line client says so), chat commands
   * "chat". Unset counts as "api".
   */
  source?: AuditSource;
}

export type Permission = "read" | "deploy" | "admin" | "agent";

const GRANTS: Record<Role, readonly Permission[]> = {
  viewer: ["read"],
  deployer: ["read", "deploy"],
  admin: ["read", "deploy", "admin", "agent"],
  agent: ["agent"],
};

/**
 * The one visibility rule: an app outside a token's list does not exist for
 * that token. Everything a limited token asks about another app is answered
 * exactly as for an app (deploy, artifact, host, …) that is not there, so it
 * cannot tell "not mine" from "not there" and cannot probe for names.
 */
export function canSee(principal: Principal, app: string): boolean {
  return principal.apps === null || principal.apps.includes(app);
}

export function can(principal: Principal, permission: Permission, app?: string): boolean {
  if (app !== undefined && !canSee(principal, app)) return false;
  return GRANTS[principal.role].includes(permission);
}

/**
 * Checks that `principal` may `permission` on something belonging to `app`
 * (or, without `app`, at all). Visibility comes first: for an app the token
 * may not see, the answer is `hidden()`, the very error the caller gives when
 * the thing does not exist (by default: that the app does not exist). Only
 * then the role (403). Callers check existence after this, so the order of
 * answers never depends on what exists.
 */
export function authorize(
  principal: Principal,
  permission: Permission,
  app?: string,
  hidden: () => TurnoutError = () => appNotFound(app ?? ""),
): void {
  if (app !== undefined && !canSee(principal, app)) throw hidden();
  if (!GRANTS[principal.role].includes(permission)) {
    throw new TurnoutError(
      "E_FORBIDDEN",
      `token '${principal.name}' (${principal.role}) may not ${permission}`,
    );
  }
}

/**
 * What only an admin of every app may do (manage tokens, grant hosts, collect
 * garbage): each reaches beyond one app, so an admin limited to some apps
 * could use it to reach the others (mint an unlimited token, grant a host
 * another app, remove what another app keeps). `what` completes "may not …".
 */
export function authorizeUnlimitedAdmin(principal: Principal, what: string): void {
  authorize(principal, "admin");
  if (principal.apps !== null) {
    throw new TurnoutError(
      "E_FORBIDDEN",
      `token '${principal.name}' is limited to some apps and may not ${what}`,
    );
  }
}

export function visibleApps(principal: Principal, apps: string[]): string[] {
  return apps.filter((app) => canSee(principal, app));
}
