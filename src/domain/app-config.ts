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

export type DeployConfig = ShellDeployConfig;

export interface EnvironmentConfig {
  name: string;
  branch: string;
  autoDeploy: boolean;
  deploy: DeployConfig;
}

export interface AppConfig {
  name: string;
  repo: string;
  auth: RepoAuth;
  /** Values resolved from `secret_env`: passed to commands and masked in every log line. */
  secretEnv: Record<string, string>;
  environments: Record<string, EnvironmentConfig>;
  /** The manifest file this app came from. */
  source: string;
}

export interface ConfigProblem {
  file: string;
  line: number | null;
  field: string;
  message: string;
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
  if (app.auth.token) values.push(app.auth.token);
  return values;
}
