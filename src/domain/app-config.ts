import type { DeployWindows } from "./deploy-window.js";
import type { EmergencyPolicy } from "./emergency.js";
import type { FleetDeployConfig } from "./fleet.js";
import type { PipelineConfig } from "./release-pipeline.js";

/**
 * An app as the manifests describe it, after validation: what the engine and
 * the providers work from. (The YAML form and its validation live in config/.)
 */
export interface RepoAuth {
  /** Path of an SSH private key used for ssh:// and scp-like remotes. */
  sshKeyFile?: string;
  /** known_hosts file pinning the remote's host key (strict checking always). */
  knownHostsFile?: string;
  /** Token for https remotes, resolved from the server environment variable the manifest names. */
  token?: string;
  /** Name of that variable, kept for messages (never the value). */
  tokenEnv?: string;
}

export interface ShellDeployConfig {
  provider: "shell";
  /** argv with placeholders, or … */
  command?: string[];
  /** … a bash script that gets values only as TURNOUT_* environment variables. */
  script?: string;
  timeoutMs: number;
  idleTimeoutMs: number;
  /** Extra environment for the command (plain values from the manifest). */
  env: Record<string, string>;
}

/** A platform's build and release API does the deploy (providers/heroku/). */
export interface HerokuDeployConfig {
  provider: "heroku";
  /** The Heroku app's name. */
  herokuApp: string;
  /** The server's environment variable holding the API key (the key itself is never in a manifest or a release). */
  apiKeyEnv: string;
  /** The Platform API's base URL (https://api.heroku.com). */
  apiUrl: string;
  timeoutMs: number;
  idleTimeoutMs: number;
  env: Record<string, string>;
}

export type DeployConfig = ShellDeployConfig | FleetDeployConfig | HerokuDeployConfig;

/**
 * A CI gate: the deploy waits (status `waiting`, phase `checks`) until every
 * required check on its commit succeeded, and fails when one fails or the
 * timeout passes.
 */
export interface ChecksConfig {
  /** GitHub commit-status contexts or check-run names that must succeed. */
  required: string[];
  /** argv run in the workspace: exit 0 passes, 75 (EX_TEMPFAIL) means "not yet", anything else fails. */
  command?: string[];
  timeoutMs: number;
  pollMs: number;
}

/** Where the commit statuses and check runs of an app's commits are read. */
export interface GithubConfig {
  /** API base: https://api.github.com, or GitHub Enterprise's https://host/api/v3. */
  apiUrl: string;
  /** owner/name */
  repository: string;
  token?: string;
  tokenEnv?: string;
  /** A GitHub `deployment` event (signed webhook) for the repository starts a deploy of its commit. */
  deployOnDeploymentEvent?: boolean;
}

/** `promote_from` (domain/promotion.ts): the environment whose releases this one takes. */
export interface PromoteFromConfig {
  env: string;
  /** How long a release must have been live there before it may come here (0: at once). */
  minLiveMs: number;
}

export interface EnvironmentConfig {
  name: string;
  /** Branch of the primary component (single-repo apps: the repository's branch). */
  branch: string;
  /** Branch of every component, primary included. */
  branches: Record<string, string>;
  autoDeploy: boolean;
  /** Fleets: bring drifted or newly joined hosts to the environment's release by themselves. */
  selfHeal: boolean;
  /** Who may deploy an emergency change (domain/emergency.ts); absent: nobody. */
  allowEmergency?: EmergencyPolicy;
  checks?: ChecksConfig;
  /** Takes only releases promoted from this environment (a direct deploy needs an admin and a reason). */
  promoteFrom?: PromoteFromConfig;
  deploy: DeployConfig;
  /** Deploy windows: outside them automatic deploys wait, manual ones need force and a reason. */
  windows?: DeployWindows;
  /** Automatic deploys bring at most this many first-parent commits; the rest follow in the next. */
  maxCommitsPerDeploy?: number;
  /** The shortest time between two automatic deploys of the environment. */
  minIntervalMs?: number;
  /**
   * Which events go to which of the server's notification channels: the
   * app's `notify:` list followed by the environment's own (absent: none).
   */
  notify?: NotifySubscription[];
}

export interface NotifySubscription {
  /** The name of a channel in the server's settings (`notify.channels`). */
  channel: string;
  /** Event kinds or patterns (`deploy.*`, `*`); see domain/notification-event.ts. */
  events: string[];
}

/** One repository of an app. Single-repo apps have one component, named `app`. */
export interface ComponentConfig {
  name: string;
  /** URL or path; for a hosted repository, the path of Turnout's own copy. */
  repo: string;
  auth: RepoAuth;
  /** Turnout hosts this repository itself (push-to-deploy). */
  hosted: boolean;
  /**
   * For a hosted repository: its name under the data directory's `hosted/`
   * and under the server's `/git/` (see hostedRepoName).
   */
  hostedAs?: string;
}

export interface WebhookConfig {
  /** Shared secret: HMAC key for GitHub and generic hooks, the token GitLab sends. */
  secret: string;
  secretEnv: string;
}

export interface AppConfig {
  name: string;
  /** The primary component's repository (for display and single-repo code paths). */
  repo: string;
  auth: RepoAuth;
  /** Every repository of the app, the primary first. */
  components: ComponentConfig[];
  /** How often the app's repositories are fetched to look for new commits. */
  pollIntervalMs: number;
  webhook?: WebhookConfig;
  github?: GithubConfig;
  /** Values resolved from `secret_env`: passed to commands and masked in every log line. */
  secretEnv: Record<string, string>;
  /** Keys providers use (Heroku's API key), by the server environment variable they come from. */
  providerSecrets?: Record<string, string>;
  environments: Record<string, EnvironmentConfig>;
  /** The ordered line of environments releases move along (absent: none). */
  pipeline?: PipelineConfig;
  /** The manifest file this app came from. */
  source: string;
}

export interface ConfigProblem {
  /** The app the manifest declares (from its file name), when the problem is one manifest's. */
  app?: string;
  file: string;
  line: number | null;
  field: string;
  message: string;
}

/**
 * The app a problem belongs to: every manifest is one app, named by its file
 * (`shop.yaml`, or `apps/shop.yaml@1a2b3c4` from a configuration repository).
 * Undefined when the file names no valid app (the problem is then no app's).
 */
export function problemApp(problem: Pick<ConfigProblem, "file">): string | undefined {
  const base =
    problem.file
      .replace(/@[0-9a-f]+$/, "")
      .split(/[\\/]/)
      .pop() ?? "";
  const name = base.replace(/\.ya?ml$/, "");
  return name !== base && /^[a-z0-9][a-z0-9-]{0,62}$/.test(name) ? name : undefined;
}

/** The active configuration: valid apps, the problems of the rest, and its revision. */
export interface ConfigSnapshot {
  revision: string;
  apps: Map<string, AppConfig>;
  problems: ConfigProblem[];
  loadedAt: string;
}

/** Every secret value an app's deploys may print, for masking. */
export function appSecrets(app: AppConfig): string[] {
  const values = Object.values(app.secretEnv);
  values.push(...Object.values(app.providerSecrets ?? {}));
  for (const component of app.components) if (component.auth.token) values.push(component.auth.token);
  if (app.github?.token) values.push(app.github.token);
  if (app.webhook) values.push(app.webhook.secret);
  return values;
}

/** The name of the component of single-repo apps. */
export const PRIMARY_COMPONENT = "app";

/**
 * Where a hosted repository lives, relative to `hosted/` on disk and to
 * `/git/` in URLs: `<app>.git` for a single-repo app, `<app>/<component>.git`
 * for a component of a multi-repo app (component null: the single repo).
 * App and component are separate path segments, and names cannot contain
 * '/' or '.', so no two (app, component) pairs share a name; the app is
 * always the first segment, which is what authorization looks up.
 */
export function hostedRepoName(app: string, component: string | null): string {
  return component === null ? `${app}.git` : `${app}/${component}.git`;
}

/** An environment with the app it belongs to: what a request or a deploy acts on. */
export interface EnvironmentTarget {
  app: AppConfig;
  environment: EnvironmentConfig;
}
