import path from "node:path";
import {
  type AppConfig,
  type ChecksConfig,
  type ComponentConfig,
  type ConfigProblem,
  type EnvironmentConfig,
  type GithubConfig,
  type HerokuDeployConfig,
  hostedRepoName,
  type NotifySubscription,
  PRIMARY_COMPONENT,
  type RepoAuth,
  type ShellDeployConfig,
} from "../domain/app-config.js";
import { parseClock, parseDays } from "../domain/deploy-window.js";
import { parseDuration } from "../domain/duration.js";
import { type FleetDeployConfig, parseAmount } from "../domain/fleet.js";
import type { LoadOptions } from "./manifest-loader.js";
import type { ManifestInput } from "./manifest-schema.js";
import { toPipeline, toPromoteFrom } from "./pipeline-builder.js";

/**
 * A validated manifest → the AppConfig the engine works from: defaults
 * applied, durations parsed, secrets resolved from the server's environment
 * (a missing variable is a problem of the manifest, reported like any other).
 */
const DEFAULT_POLL_INTERVAL = "60s";
const DEFAULT_CHECKS_TIMEOUT = "30m";
const DEFAULT_CHECKS_POLL = "10s";
const DEFAULT_BRANCH = "main";

export function toAppConfig(
  name: string,
  file: string,
  input: ManifestInput,
  options: LoadOptions,
  problems: ConfigProblem[],
): AppConfig {
  const variable = (field: string, envName: string): string | undefined => {
    if (options.skipVariables) return "";
    const value = options.environment[envName];
    if (value === undefined) {
      problems.push({ file, line: null, field, message: `environment variable ${envName} is not set` });
    }
    return value;
  };
  const toAuth = (field: string, raw: ManifestInput["auth"]): RepoAuth => {
    const token = raw?.token_env ? variable(`${field}.token_env`, raw.token_env) : undefined;
    return {
      ...(raw?.ssh_key_file ? { sshKeyFile: raw.ssh_key_file } : {}),
      ...(raw?.known_hosts_file ? { knownHostsFile: raw.known_hosts_file } : {}),
      ...(token !== undefined ? { token } : {}),
      ...(raw?.token_env ? { tokenEnv: raw.token_env } : {}),
    };
  };
  // Keyed on the manifest's shape, not the component's name: a multi-repo app
  // may name a component `app` too.
  const hosted = (component: string | null) => {
    const hostedAs = hostedRepoName(name, component);
    return { repo: path.join(options.hostedReposDir, ...hostedAs.split("/")), hostedAs };
  };

  const secretEnv: Record<string, string> = {};
  const providerSecrets: Record<string, string> = {};
  for (const envName of input.secret_env ?? []) {
    const value = variable("secret_env", envName);
    if (value !== undefined) secretEnv[envName] = value;
  }

  const components: ComponentConfig[] = [];
  const defaultBranches: Record<string, string> = {};
  if (input.components) {
    for (const [componentName, c] of Object.entries(input.components)) {
      components.push({
        name: componentName,
        ...(c.hosted ? hosted(componentName) : { repo: c.repo! }),
        auth: toAuth(`components.${componentName}.auth`, c.auth),
        hosted: c.hosted === true,
      });
      defaultBranches[componentName] = c.branch ?? DEFAULT_BRANCH;
    }
  } else {
    components.push({
      name: PRIMARY_COMPONENT,
      ...(input.hosted ? hosted(null) : { repo: input.repo! }),
      auth: toAuth("auth", input.auth),
      hosted: input.hosted === true,
    });
    defaultBranches[PRIMARY_COMPONENT] = DEFAULT_BRANCH;
  }
  const primary = components[0]!;

  const environments: Record<string, EnvironmentConfig> = {};
  for (const [envName, env] of Object.entries(input.environments)) {
    const branches: Record<string, string> = {};
    for (const c of components)
      branches[c.name] = env.branches?.[c.name] ?? env.branch ?? defaultBranches[c.name]!;
    for (const unknown of Object.keys(env.branches ?? {}).filter((n) => !(n in branches))) {
      problems.push({
        file,
        line: null,
        field: `environments.${envName}.branches.${unknown}`,
        message: `no component named '${unknown}'`,
      });
    }
    const d = env.deploy;
    environments[envName] = {
      name: envName,
      branch: branches[primary.name]!,
      branches,
      autoDeploy: env.auto_deploy,
      ...(env.checks || env.check_command ? { checks: toChecks(env) } : {}),
      selfHeal: env.self_heal === true,
      ...(env.promote_from !== undefined ? { promoteFrom: toPromoteFrom(env)! } : {}),
      ...(env.allow_emergency
        ? { allowEmergency: env.allow_emergency === true ? "admin" : env.allow_emergency }
        : {}),
      deploy:
        d.provider === "fleet"
          ? toFleetDeploy(d, options)
          : d.provider === "heroku"
            ? toHerokuDeploy(d, options, (keyEnv) => {
                const value = variable(`environments.${envName}.deploy.api_key_env`, keyEnv);
                if (value !== undefined) providerSecrets[keyEnv] = value;
              })
            : toShellDeploy(d, options),
      ...toDeployLimits(env),
    };
    const subscriptions = toNotify(file, input.notify, "notify", options, problems).concat(
      toNotify(file, env.notify, `environments.${envName}.notify`, options, problems),
    );
    if (subscriptions.length > 0) environments[envName]!.notify = subscriptions;
  }

  const pipeline = toPipeline(input, environments, file, problems, toChecks);

  // Heroku builds one source tree: the checkout of one repository.
  for (const [envName, env] of Object.entries(input.environments)) {
    if (env.deploy.provider === "heroku" && components.length > 1)
      problems.push({
        file,
        line: null,
        field: `environments.${envName}.deploy.provider`,
        message: "the heroku provider deploys single-repository apps only",
      });
  }
  const webhookSecret = input.webhook ? variable("webhook.secret_env", input.webhook.secret_env) : undefined;
  const github = toGithub(input, primary, variable);
  const needsGithub =
    Object.values(environments).some((e) => (e.checks?.required.length ?? 0) > 0) ||
    (pipeline?.stages.some((s) => (s.gate?.checks?.required.length ?? 0) > 0) ?? false);
  if (input.github?.deploy_on_deployment_event && !github) {
    problems.push({
      file,
      line: null,
      field: "github.repository",
      message:
        "`deploy_on_deployment_event` needs the GitHub repository: name it (github.repository) or use a github.com repo URL",
    });
  }
  if (needsGithub && !github) {
    problems.push({
      file,
      line: null,
      field: "github.repository",
      message:
        "`checks` are read from GitHub: name the repository (github.repository) or use a github.com repo URL",
    });
  }

  return {
    name,
    repo: primary.repo,
    auth: primary.auth,
    components,
    pollIntervalMs: parseDuration(input.poll_interval ?? DEFAULT_POLL_INTERVAL),
    ...(webhookSecret !== undefined
      ? { webhook: { secret: webhookSecret, secretEnv: input.webhook!.secret_env } }
      : {}),
    ...(github ? { github } : {}),
    secretEnv,
    ...(Object.keys(providerSecrets).length > 0 ? { providerSecrets } : {}),
    environments,
    ...(pipeline ? { pipeline } : {}),
    source: file,
  };
}

type DeployInput = ManifestInput["environments"][string]["deploy"];

function toShellDeploy(
  d: Extract<DeployInput, { provider: "shell" }>,
  options: LoadOptions,
): ShellDeployConfig {
  return {
    provider: "shell",
    ...(d.command ? { command: d.command } : {}),
    ...(d.script ? { script: d.script } : {}),
    timeoutMs: d.timeout !== undefined ? parseDuration(d.timeout) : options.defaultTimeoutMs,
    idleTimeoutMs:
      d.idle_timeout !== undefined ? parseDuration(d.idle_timeout) : options.defaultIdleTimeoutMs,
    env: d.env ?? {},
  };
}

/** Heroku: the key's value is kept apart from the environment's settings (which releases record). */
function toHerokuDeploy(
  d: Extract<DeployInput, { provider: "heroku" }>,
  options: LoadOptions,
  needKey: (envName: string) => void,
): HerokuDeployConfig {
  needKey(d.api_key_env);
  return {
    provider: "heroku",
    herokuApp: d.app,
    apiKeyEnv: d.api_key_env,
    apiUrl: (d.api_url ?? "https://api.heroku.com").replace(/\/+$/, ""),
    timeoutMs: d.timeout !== undefined ? parseDuration(d.timeout) : options.defaultTimeoutMs,
    idleTimeoutMs: options.defaultIdleTimeoutMs,
    env: {},
  };
}

const DEFAULT_KEEP_RELEASES = 5;

function toFleetDeploy(
  d: Extract<DeployInput, { provider: "fleet" }>,
  options: LoadOptions,
): FleetDeployConfig {
  const s = d.strategy ?? {};
  return {
    provider: "fleet",
    hostLabels: d.hosts?.labels ?? null,
    // A host's own field, else the fleet's ssh_defaults (the schema made sure one of them is there).
    ssh: (d.ssh ?? []).map((h) => ({
      name: h.name,
      address: h.address,
      port: h.port ?? d.ssh_defaults?.port ?? 22,
      user: (h.user ?? d.ssh_defaults?.user)!,
      keyFile: (h.key_file ?? d.ssh_defaults?.key_file)!,
      knownHostsFile: (h.known_hosts_file ?? d.ssh_defaults?.known_hosts_file)!,
      root: h.root ?? d.ssh_defaults?.root ?? "/srv/turnout",
      labels: h.labels ?? {},
    })),
    ...(d.build || d.build_script
      ? {
          build: {
            ...(d.build ? { command: d.build } : {}),
            ...(d.build_script ? { script: d.build_script } : {}),
          },
        }
      : {}),
    artifactPath: d.artifact ?? ".",
    shared: d.shared ?? [],
    ...(d.path ? { path: d.path } : {}),
    ...(d.before_switch ? { beforeSwitch: d.before_switch } : {}),
    ...(d.restart ? { restart: d.restart } : {}),
    ...(d.depool ? { depool: d.depool } : {}),
    ...(d.pool ? { pool: d.pool } : {}),
    ...(d.health
      ? {
          health: {
            ...(d.health.http ? { http: d.health.http } : {}),
            ...(d.health.command ? { command: d.health.command } : {}),
            retries: d.health.retries ?? 3,
            intervalMs: parseDuration(d.health.interval ?? "2s"),
            timeoutMs: parseDuration(d.health.timeout ?? "5s"),
          },
        }
      : {}),
    strategy: {
      canary: parseAmount(s.canary ?? 0, "strategy.canary"),
      batch: parseAmount(s.batch ?? "100%", "strategy.batch"),
      failureLimit: parseAmount(s.failure_limit ?? 0, "strategy.failure_limit"),
      bakeMs: parseDuration(s.bake ?? "0s"),
      approval: s.approval === true,
      approvalTimeoutMs: parseDuration(s.approval_timeout ?? "1h"),
      stageConcurrency: s.concurrency ?? null,
    },
    keepReleases: d.keep_releases ?? DEFAULT_KEEP_RELEASES,
    selfHeal: false,
    timeoutMs: d.timeout !== undefined ? parseDuration(d.timeout) : options.defaultTimeoutMs,
    idleTimeoutMs:
      d.idle_timeout !== undefined ? parseDuration(d.idle_timeout) : options.defaultIdleTimeoutMs,
    env: d.env ?? {},
  };
}

function toChecks(
  env: Pick<
    ManifestInput["environments"][string],
    "checks" | "check_command" | "checks_timeout" | "checks_poll"
  >,
): ChecksConfig {
  return {
    required: env.checks ?? [],
    ...(env.check_command ? { command: env.check_command } : {}),
    timeoutMs: parseDuration(env.checks_timeout ?? DEFAULT_CHECKS_TIMEOUT),
    pollMs: parseDuration(env.checks_poll ?? DEFAULT_CHECKS_POLL),
  };
}

/** owner/name of a github.com URL (https or ssh), if it is one. */
export function githubRepository(url: string): string | undefined {
  const match =
    /^(?:https:\/\/(?:[^@/]+@)?github\.com\/|git@github\.com:|ssh:\/\/git@github\.com\/)([A-Za-z0-9_.-]+\/[A-Za-z0-9_.-]+?)(?:\.git)?\/?$/.exec(
      url,
    );
  return match?.[1];
}

function toGithub(
  input: ManifestInput,
  primary: ComponentConfig,
  variable: (field: string, envName: string) => string | undefined,
): GithubConfig | undefined {
  const repository = input.github?.repository ?? githubRepository(primary.repo);
  if (!repository) return undefined;
  const tokenEnv = input.github?.token_env ?? primary.auth.tokenEnv;
  const token = input.github?.token_env
    ? variable("github.token_env", input.github.token_env)
    : primary.auth.token;
  return {
    apiUrl: (input.github?.api_url ?? "https://api.github.com").replace(/\/+$/, ""),
    repository,
    ...(token !== undefined ? { token } : {}),
    ...(tokenEnv !== undefined ? { tokenEnv } : {}),
    ...(input.github?.deploy_on_deployment_event ? { deployOnDeploymentEvent: true } : {}),
  };
}

/** deploy_windows, max_commits_per_deploy, min_interval (validated by the schema) in the engine's form. */
function toDeployLimits(
  env: ManifestInput["environments"][string],
): Pick<EnvironmentConfig, "windows" | "maxCommitsPerDeploy" | "minIntervalMs"> {
  const w = env.deploy_windows;
  return {
    ...(w
      ? {
          windows: {
            timezone: w.timezone,
            allow: w.allow.map((rule) => ({
              days: parseDays(typeof rule.days === "string" ? [rule.days] : rule.days)!,
              from: parseClock(rule.from)!,
              to: parseClock(rule.to, true)!,
            })),
          },
        }
      : {}),
    ...(env.max_commits_per_deploy !== undefined ? { maxCommitsPerDeploy: env.max_commits_per_deploy } : {}),
    ...(env.min_interval !== undefined ? { minIntervalMs: parseDuration(env.min_interval) } : {}),
  };
}

/** A `notify:` list; a channel the server does not define is a problem of the manifest, with its line. */
function toNotify(
  file: string,
  raw: ManifestInput["notify"],
  field: string,
  options: LoadOptions,
  problems: ConfigProblem[],
): NotifySubscription[] {
  const known = options.notifyChannels;
  return (raw ?? []).map((entry, i) => {
    if (known && !known.includes(entry.channel)) {
      problems.push({
        file,
        line: null,
        field: `${field}.${i}.channel`,
        message:
          `no notification channel '${entry.channel}' in the server's settings` +
          (known.length > 0 ? ` (defined: ${known.join(", ")})` : " (none are defined)"),
      });
    }
    return { channel: entry.channel, events: entry.events ?? ["*"] };
  });
}
