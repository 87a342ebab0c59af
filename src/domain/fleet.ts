import { TurnoutError } from "./errors.js";
import { grantAllowsApp, type HostGrant } from "./host-grant.js";

/**
 * Fleets: hosts (reached through an agent that connects out, or plain SSH),
 * what each holds, and the strategy a fleet deploy follows. Pure types and
 * rules; the orchestration lives in providers/fleet/.
 */

/** A count of hosts, or a share of the fleet. */
export type Amount = { count: number } | { percent: number };

export interface HealthCheckConfig {
  /** GET this URL on the host (from the host itself): 2xx is healthy. */
  http?: string;
  /** …or run this argv in the release directory: exit 0 is healthy. */
  command?: string[];
  retries: number;
  intervalMs: number;
  timeoutMs: number;
}

export interface StrategyConfig {
  /** Hosts switched first, health-checked and baked before the rest. */
  canary: Amount;
  /** Size of each following switch step. */
  batch: Amount;
  /** Failed hosts tolerated (staging or after switching) before the deploy stops or rolls back. */
  failureLimit: Amount;
  bakeMs: number;
  /** Wait for `turnout approve` after the canary (until approvalTimeoutMs). */
  approval: boolean;
  approvalTimeoutMs: number;
  /** Hosts staged at once; null: chosen per deploy for the fleet and the server (defaultStageConcurrency). */
  stageConcurrency: number | null;
}

/**
 * Hosts staged at once when the manifest does not say. Agents do their own
 * work (the server streams them blobs from its packs, a few milliseconds of
 * CPU per host), so every agent host stages at once, up to 100. Each SSH
 * host costs the server an ssh process (encryption) and a tar stream, so
 * those are bounded by the server's cores: 4 per core, at least 8.
 */
export function defaultStageConcurrency(hosts: { agents: number; ssh: number }, cores: number): number {
  const agents = Math.min(hosts.agents, 100);
  const ssh = Math.min(hosts.ssh, Math.max(8, 4 * Math.max(1, cores)));
  return Math.max(1, agents + ssh);
}

export interface SshHostConfig {
  name: string;
  address: string;
  port: number;
  user: string;
  keyFile: string;
  knownHostsFile: string;
  /** The release root on that host (default /srv/turnout). */
  root: string;
  labels: Record<string, string>;
}

export interface FleetDeployConfig {
  provider: "fleet";
  /** Agent hosts whose labels include all of these. */
  hostLabels: Record<string, string> | null;
  ssh: SshHostConfig[];
  /** Run in the workspace before the artifact is taken. */
  build?: { command?: string[]; script?: string };
  /** Directory of the workspace that becomes the artifact (default: the whole workspace without .git). */
  artifactPath: string;
  /** Paths linked from <root>/<app>/shared/ into every release. */
  shared: string[];
  /**
   * The environment's own place on its hosts (absolute): releases, current,
   * slots and shared live under it instead of `<root>/<app>`. Absent: `<root>/<app>`.
   */
  path?: string;
  beforeSwitch?: string[];
  restart?: string[];
  depool?: string[];
  pool?: string[];
  health?: HealthCheckConfig;
  strategy: StrategyConfig;
  keepReleases: number;
  selfHeal: boolean;
  timeoutMs: number;
  idleTimeoutMs: number;
  env: Record<string, string>;
}

export type HostKind = "agent" | "ssh";
export type PoolState = "pooled" | "depooled";

export interface Host {
  id: number;
  name: string;
  kind: HostKind;
  /**
   * The labels that count: for an agent, those it declared that its grant
   * allows (see host-grant.ts); for an SSH host, its manifest's.
   */
  labels: Record<string, string>;
  /** Labels an agent declared that its grant does not allow: ignored, shown so the operator sees why. */
  ungrantedLabels: Record<string, string>;
  /** What an agent host may receive (SSH hosts: their app, labels from the manifest). */
  grant: HostGrant;
  /** SSH hosts: the app whose manifest declares it (null: a row from before apps owned them). */
  app: string | null;
  address: string | null;
  /** `depooled` when the host is out of the pool for any app (see depooledApps); per app is what deploys go by. */
  poolState: PoolState;
  /** The apps this host is depooled for (pool state is per host and app). */
  depooledApps: string[];
  connected: boolean;
  lastSeenAt: string | null;
}

/** What a host holds of one app at one place, as it reported it. */
export interface HostAppInventory {
  app: string;
  /** The environment's own deploy path, when not `<root>/<app>` (absent: the default place). */
  path?: string;
  /** Release ids present under releases/. */
  releases: string[];
  /** Where `current` points (null: nowhere yet). */
  current: string | null;
  /** Other slots → release ids. */
  slots: Record<string, string>;
}

/** A host with what it holds, as the hosts API shows it. */
export interface HostWithApps extends Host {
  apps: HostAppInventory[];
}

/** Per-host progress of one fleet deploy. */
export const HOST_STEPS = [
  "pending",
  "staging",
  "staged",
  "stage_failed",
  "switching",
  "switched",
  "healthy",
  "failed",
  "rolled_back",
  "depooled",
] as const;
export type HostStep = (typeof HOST_STEPS)[number];

export function amountOf(amount: Amount, total: number): number {
  if ("count" in amount) return Math.min(total, Math.max(0, Math.floor(amount.count)));
  return Math.min(total, Math.ceil((amount.percent / 100) * total));
}

/** Failures tolerated among `total` hosts: a count, or a percentage rounded down. */
export function failureBudget(limit: Amount, total: number): number {
  if ("count" in limit) return Math.max(0, Math.floor(limit.count));
  return Math.floor((limit.percent / 100) * total);
}

/**
 * The switch order: the canary batch first (at least one host when a canary
 * is asked for), then batches of `batch` hosts (at least one).
 */
export function planBatches<T>(
  hosts: readonly T[],
  strategy: Pick<StrategyConfig, "canary" | "batch">,
): T[][] {
  const batches: T[][] = [];
  let rest = [...hosts];
  const canary = Math.min(rest.length, amountOf(strategy.canary, hosts.length));
  if (canary > 0) {
    batches.push(rest.slice(0, canary));
    rest = rest.slice(canary);
  }
  const size = Math.max(1, amountOf(strategy.batch, hosts.length));
  while (rest.length > 0) {
    batches.push(rest.slice(0, size));
    rest = rest.slice(size);
  }
  return batches;
}

/** "25%" | 3 → Amount. */
export function parseAmount(value: string | number, field: string): Amount {
  if (typeof value === "number" && Number.isInteger(value) && value >= 0) return { count: value };
  if (typeof value === "string") {
    const match = /^([0-9]{1,3}(?:\.[0-9]+)?)%$/.exec(value.trim());
    if (match && Number(match[1]) <= 100) return { percent: Number(match[1]) };
    if (/^[0-9]+$/.test(value.trim())) return { count: Number(value) };
  }
  throw new TurnoutError(
    "E_VALIDATION",
    `${field}: expected a count (3) or a percentage ("25%"), got ${JSON.stringify(value)}`,
  );
}

/**
 * Whether a host belongs to an app's fleet environment: the one rule that
 * deploys (and so `secret_env`), drift views and self-heal share. An agent
 * needs a grant that includes the app and granted labels that include every
 * wanted one; an SSH host must be one the app's own manifest declares.
 */
export function inFleet(
  host: Host,
  app: string,
  config: Pick<FleetDeployConfig, "hostLabels" | "ssh">,
): boolean {
  if (host.kind === "ssh") {
    return (host.app === null || host.app === app) && config.ssh.some((s) => s.name === host.name);
  }
  return (
    config.hostLabels !== null &&
    grantAllowsApp(host.grant, app) &&
    labelsMatch(config.hostLabels, host.labels)
  );
}

/**
 * Whether a host serves an app: it holds something of the app, its grant
 * names the app, or one of the app's fleet environments would deploy to it (`inFleet`: its grant, its
 * granted labels, or the app's own SSH hosts). What a token limited to some
 * apps may see of the fleet.
 */
export function hostServes(
  host: Host & Pick<HostWithApps, "apps">,
  app: string,
  deploys: readonly ({ provider: string } & Partial<Pick<FleetDeployConfig, "hostLabels" | "ssh">>)[],
): boolean {
  if (host.apps.some((a) => a.app === app)) return true;
  // An agent granted the app by name is one of its hosts, even before a deploy targets it.
  if (host.kind === "agent" && host.grant.apps?.includes(app)) return true;
  return deploys.some(
    (deploy) =>
      deploy.provider === "fleet" &&
      inFleet(host, app, { hostLabels: deploy.hostLabels ?? null, ssh: deploy.ssh ?? [] }),
  );
}

/** Whether a host's labels include every wanted label. */
export function labelsMatch(wanted: Record<string, string>, labels: Record<string, string>): boolean {
  return Object.entries(wanted).every(([k, v]) => labels[k] === v);
}

/**
 * Which layout of an app an operation on a host works on: the app's name
 * alone (`<root>/<app>`), or the app with an environment's own deploy path.
 */
export type AppTarget = string | { app: string; path: string };

/** The target for an app and an optional deploy path: the plain name when there is no path. */
export function appTarget(app: string, path?: string | null): AppTarget {
  return path ? { app, path } : app;
}

export function targetApp(target: AppTarget): string {
  return typeof target === "string" ? target : target.app;
}

export function targetPath(target: AppTarget): string | undefined {
  return typeof target === "string" ? undefined : target.path;
}

/** The inventory entry of one app at one place (path undefined: `<root>/<app>`). */
export function inventoryOf<T extends Pick<HostAppInventory, "app" | "path">>(
  inventory: readonly T[],
  app: string,
  path?: string | null,
): T | undefined {
  return inventory.find((entry) => entry.app === app && (entry.path ?? null) === (path ?? null));
}
