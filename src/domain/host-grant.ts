import { TurnoutError } from "./errors.js";
import { labelProblem, MAX_LABELS } from "./labels.js";
import { isValidName } from "./names.js";
import type { Principal } from "./roles.js";

/**
 * What a host may receive, decided on the server side: the apps whose
 * deploys (and so whose `secret_env`) may reach it, and the labels that
 * count for it. An admin decides it when creating the enrollment token a
 * host enrolls with (the host inherits the token's grant), or later for one
 * host. A host's own hello only declares labels; a declared label counts
 * when the grant allows exactly that `key=value`, and is otherwise ignored
 * (shown as "ungranted").
 *
 * null means unrestricted: every app, or whatever labels the host declares.
 * Hosts and agent tokens from before grants existed are unrestricted in
 * both, so that upgrading breaks no fleet; they are flagged as such.
 */
export interface HostGrant {
  /** Apps the host may serve; null: every app. */
  apps: string[] | null;
  /** `key=value` labels that count; null: every label the host declares. [] grants none. */
  labels: string[] | null;
}

/** A host that chooses its own labels chooses its own fleets: the operator should know. */
export function isUnrestricted(grant: HostGrant): boolean {
  return grant.labels === null;
}

export function grantAllowsApp(grant: HostGrant, app: string): boolean {
  return grant.apps === null || grant.apps.includes(app);
}

/** Splits what a host declared into the labels that count and those its grant does not allow. */
export function applyGrant(
  declared: Record<string, string>,
  grant: HostGrant,
): { granted: Record<string, string>; ungranted: Record<string, string> } {
  if (grant.labels === null) return { granted: { ...declared }, ungranted: {} };
  const allowed = new Set(grant.labels);
  const granted: Record<string, string> = {};
  const ungranted: Record<string, string> = {};
  for (const [key, value] of Object.entries(declared)) {
    if (allowed.has(`${key}=${value}`)) granted[key] = value;
    else ungranted[key] = value;
  }
  return { granted, ungranted };
}

/**
 * Whether `outer` grants at least everything `inner` does. An enrollment
 * token may take over a host name only when it covers the host's grant: no
 * token can take a host away from a grant it does not hold itself.
 */
export function grantCovers(outer: HostGrant, inner: HostGrant): boolean {
  return covers(outer.apps, inner.apps) && covers(outer.labels, inner.labels);
}

/** One dimension of a grant (null: everything). */
function covers(outer: string[] | null, inner: string[] | null): boolean {
  if (outer === null) return true;
  if (inner === null) return false;
  return inner.every((x) => outer.includes(x));
}

/**
 * The grant a host enrolling with this token gets: an agent token's apps and
 * labels; an admin token (trusted with everything anyway) grants its apps and
 * whatever labels the host declares.
 */
export function enrollmentGrant(principal: Principal): HostGrant {
  return {
    apps: principal.apps,
    labels: principal.role === "agent" ? (principal.labels ?? null) : null,
  };
}

/** Validated, sorted and without duplicates: `KEY=VALUE` strings as the CLI and the API take them. */
export function parseLabelGrant(values: readonly string[]): string[] {
  const out = new Set<string>();
  for (const value of values) {
    const eq = value.indexOf("=");
    if (eq <= 0) {
      throw new TurnoutError("E_VALIDATION", `expected a label as KEY=VALUE, got ${JSON.stringify(value)}`, {
        label: value,
      });
    }
    const problem = labelProblem(value.slice(0, eq), value.slice(eq + 1));
    if (problem) throw new TurnoutError("E_VALIDATION", problem, { label: value });
    out.add(value);
  }
  // A grant may list several values of one key (role=web, role=worker): more entries than a host's labels.
  if (out.size > MAX_LABELS * 4) {
    throw new TurnoutError("E_VALIDATION", `a grant lists at most ${MAX_LABELS * 4} labels`);
  }
  return [...out].sort();
}

export function parseAppGrant(values: readonly string[]): string[] {
  for (const app of values) {
    if (!isValidName(app)) {
      throw new TurnoutError("E_INVALID_NAME", `invalid app name ${JSON.stringify(app)}`, {
        kind: "app",
        value: app,
      });
    }
  }
  return [...new Set(values)].sort();
}
