import { TurnoutError } from "./errors.js";

/**
 * `agent` tokens are for hosts only: they enroll an agent and download the
 * blobs of releases, and read nothing else.
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
  /** Short-lived tokens (browser sign-ins): when the token stops working. */
  expiresAt?: string | null;
}

export type Permission = "read" | "deploy" | "admin" | "agent";

const GRANTS: Record<Role, readonly Permission[]> = {
  viewer: ["read"],
  deployer: ["read", "deploy"],
  admin: ["read", "deploy", "admin", "agent"],
  agent: ["agent"],
};

export function can(principal: Principal, permission: Permission, app?: string): boolean {
  if (!GRANTS[principal.role].includes(permission)) return false;
  if (app !== undefined && principal.apps !== null && !principal.apps.includes(app)) return false;
  return true;
}

export function authorize(principal: Principal, permission: Permission, app?: string): void {
  if (!GRANTS[principal.role].includes(permission)) {
    throw new TurnoutError(
      "E_FORBIDDEN",
      `token '${principal.name}' (${principal.role}) may not ${permission}`,
    );
  }
  if (app !== undefined && principal.apps !== null && !principal.apps.includes(app)) {
    throw new TurnoutError("E_FORBIDDEN", `token '${principal.name}' is not allowed to use app '${app}'`);
  }
}

export function visibleApps(principal: Principal, apps: string[]): string[] {
  return principal.apps === null ? apps : apps.filter((a) => principal.apps!.includes(a));
}
