import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { z } from "zod";
import { parseDuration, parseTimerDuration } from "../domain/duration.js";
import { TurnoutError } from "../domain/errors.js";
import { refProblem } from "../domain/refs.js";
import { DEFAULT_RETENTION, type RetentionSettings } from "../domain/retention.js";
import { isRelativeRemotePath, remoteKind } from "../git/remote-url.js";
import { LOG_FORMATS, LOG_LEVELS, type LogFormat, type LogLevel } from "../observability/log-levels.js";
import {
  type ArtifactStoreSettings,
  artifactStoreFileSchema,
  resolveArtifactStore,
} from "./artifact-store-settings.js";
import { STARTUP_WAIT_MS } from "./manifest-limits.js";
import { type NotifySettings, resolveNotifySettings } from "./notify-settings.js";
import { resolveSlackSettings, type SlackSettings, slackFileSchema } from "./slack-settings.js";

/**
 * Server settings, resolved once at start-up: flags > environment > settings
 * file > defaults. This is the only module (with the manifest loader) that
 * reads process.env; everything else receives a ServerSettings.
 */
export interface ServerSettings {
  host: string;
  port: number;
  dataDir: string;
  /** App manifests in a directory: used unless configRepo is set. */
  configDir: string;
  /** App manifests from a git repository (configuration as code) instead of configDir. */
  configRepo?: string;
  /** The branch of configRepo whose head is the configuration. */
  configBranch: string;
  /** Name of the variable holding an https token for a private configRepo (the value never sits in settings). */
  configRepoTokenEnv?: string;
  /** SSH private key for an ssh:// or scp-like configRepo. */
  configRepoSshKey?: string;
  /** How often the configuration is looked at again: 3 s for a directory, 30 s for a repository by default. */
  configPollMs: number;
  /** How long start-up waits for the manifests to be parsed before it starts with the rest "loading". */
  configStartupWaitMs: number;
  /** postgres://… to use PostgreSQL; undefined for the embedded SQLite in dataDir. */
  databaseUrl: string | undefined;
  /** Where servers on PostgreSQL share artifact blobs: the database (default) or an S3-compatible bucket. */
  artifactStore: ArtifactStoreSettings;
  /** Deploys one server process runs at once, across all environments. */
  concurrency: number;
  leaseMs: number;
  /** Grace period between SIGTERM and SIGKILL when a deploy is cancelled or times out. */
  killGraceMs: number;
  /**
   * How long a stopping server lets its running deploys finish before it
   * interrupts them (recorded `interrupted`). 0: interrupt at once.
   */
  shutdownGraceMs: number;
  logFlushMs: number;
  /** Defaults for deploys whose manifest sets no timeout. */
  defaultTimeoutMs: number;
  defaultIdleTimeoutMs: number;
  /** Create the demo app and its repository if the config directory has no apps. */
  demo: boolean;
  /** Largest request body accepted, in bytes. */
  bodyLimit: number;
  /** How long a client may take to send a request's headers. */
  headersTimeoutMs: number;
  /**
   * How long a client may take to send a whole JSON body, from its headers on;
   * for streamed bodies (artifact uploads, git pushes), the window over which
   * uploadMinRate is measured.
   */
  bodyTimeoutMs: number;
  /** Streamed bodies must keep arriving at this many bytes per second (averaged over bodyTimeoutMs). */
  uploadMinRate: number;
  /** How long an idle keep-alive connection stays open between requests. */
  keepAliveTimeoutMs: number;
  /** Connections open at once (agents' included); more are closed as they arrive. */
  maxConnections: number;
  /** Extra environment (e.g. the server's own) the manifest loader may resolve token_env / secret_env from. */
  environment: Record<string, string | undefined>;
  /** What the garbage collector keeps, and when it runs (see domain/retention.ts). */
  retention: RetentionSettings;
  /** Slack slash commands (see slack-settings.ts); undefined: off. */
  slack?: SlackSettings;
  /** Notification channels and their credentials, the retry policy, the public URL (config/notify-settings.ts). */
  notify?: NotifySettings;
  /** The server's log level (pino's names; default info). */
  logLevel: LogLevel;
  /** JSON lines, readable lines, or (auto) readable on a terminal and JSON otherwise. */
  logFormat: LogFormat;
  /** host:port of a second listener serving only GET /metrics, without authentication (undefined: none). */
  metricsListen?: { host: string; port: number };
}

export interface SettingsFlags {
  host?: string;
  port?: string | number;
  dataDir?: string;
  configDir?: string;
  configRepo?: string;
  configBranch?: string;
  databaseUrl?: string;
  concurrency?: string | number;
  settingsFile?: string;
  demo?: boolean;
  logLevel?: string;
  metricsListen?: string;
}

const fileSchema = z
  .object({
    host: z.string().optional(),
    port: z.number().int().min(0).max(65535).optional(),
    data_dir: z.string().optional(),
    config_dir: z.string().optional(),
    config_repo: z.string().optional(),
    config_branch: z.string().optional(),
    config_repo_token_env: z.string().optional(),
    config_repo_ssh_key: z.string().optional(),
    config_poll: z.union([z.string(), z.number()]).optional(),
    config_startup_wait: z.union([z.string(), z.number()]).optional(),
    database_url: z.string().optional(),
    artifact_store: artifactStoreFileSchema.optional(),
    concurrency: z.number().int().min(1).max(256).optional(),
    lease: z.union([z.string(), z.number()]).optional(),
    kill_grace: z.union([z.string(), z.number()]).optional(),
    shutdown_grace: z.union([z.string(), z.number()]).optional(),
    log_level: z.string().optional(),
    log_format: z.string().optional(),
    metrics_listen: z.string().optional(),
    default_timeout: z.union([z.string(), z.number()]).optional(),
    default_idle_timeout: z.union([z.string(), z.number()]).optional(),
    headers_timeout: z.union([z.string(), z.number()]).optional(),
    body_timeout: z.union([z.string(), z.number()]).optional(),
    upload_min_rate: z.number().int().min(0).optional(),
    keep_alive_timeout: z.union([z.string(), z.number()]).optional(),
    max_connections: z.number().int().min(1).optional(),
    /** The server's address as people reach it (links in notifications). */
    public_url: z.string().url().optional(),
    /** Notification channels (validated in notify-settings.ts). */
    notify: z.unknown().optional(),
    retention: z
      .object({
        releases: z.number().int().min(1).optional(),
        artifact_grace: z.union([z.string(), z.number()]).optional(),
        blob_grace: z.union([z.string(), z.number()]).optional(),
        logs: z.number().int().min(1).optional(),
        log_age: z.union([z.string(), z.number()]).optional(),
        gc_interval: z.union([z.string(), z.number()]).optional(),
        gc_after_deploys: z.number().int().min(0).optional(),
      })
      .strict()
      .optional(),
    slack: slackFileSchema.optional(),
  })
  .strict();

/**
 * The HTTP server's limits, by default. Stalled clients must not hold
 * connections: headers and JSON bodies arrive in seconds or not at all;
 * uploads may take as long as they need while they keep moving; an idle
 * keep-alive connection is closed after a few seconds. Long-lived streams
 * (log followers, agents) are responses and upgraded sockets, which none of
 * these cut.
 */
export const DEFAULT_HTTP_LIMITS = {
  headersTimeoutMs: 10_000,
  bodyTimeoutMs: 30_000,
  uploadMinRate: 1024,
  keepAliveTimeoutMs: 5_000,
  // An agent holds one connection, and up to four more while it downloads a
  // release (two batch requests, and a prefetch's): room for a thousand hosts
  // staging at once and their API clients (2,000 was hit at 1,000 hosts).
  maxConnections: 10_000,
} as const;

export function resolveSettings(
  flags: SettingsFlags,
  env: Record<string, string | undefined> = process.env,
  cwd: string = process.cwd(),
): ServerSettings {
  const settingsFile = flags.settingsFile ?? env["TURNOUT_SETTINGS_FILE"];
  const file = settingsFile ? readSettingsFile(path.resolve(cwd, settingsFile)) : {};

  const dataDir = path.resolve(cwd, flags.dataDir ?? env["TURNOUT_HOME"] ?? file.data_dir ?? ".turnout");
  const configDir = path.resolve(
    cwd,
    flags.configDir ?? env["TURNOUT_CONFIG_DIR"] ?? file.config_dir ?? "turnout.d",
  );
  // Empty means "not set" here too: TURNOUT_CONFIG_REPO= falls back to the directory.
  const configRepo = flags.configRepo || env["TURNOUT_CONFIG_REPO"] || file.config_repo || undefined;
  const configBranch = flags.configBranch || env["TURNOUT_CONFIG_BRANCH"] || file.config_branch || "main";
  const branchProblem = refProblem(configBranch);
  if (branchProblem) {
    throw new TurnoutError("E_CONFIG", `config branch ${JSON.stringify(configBranch)} ${branchProblem}`);
  }
  const configRepoTokenEnv = env["TURNOUT_CONFIG_REPO_TOKEN_ENV"] || file.config_repo_token_env || undefined;
  const configRepoSshKey = env["TURNOUT_CONFIG_REPO_SSH_KEY"] || file.config_repo_ssh_key || undefined;
  // A repository is fetched over the network: polling it as often as a local directory would be rude.
  const configPollMs = positiveDuration(
    "config poll interval",
    env["TURNOUT_CONFIG_POLL"] || file.config_poll || (configRepo ? "30s" : "3s"),
  );
  const startupWait = env["TURNOUT_CONFIG_STARTUP_WAIT"] || file.config_startup_wait;
  const configStartupWaitMs =
    startupWait !== undefined ? parseTimerDuration(startupWait, 0) : STARTUP_WAIT_MS;
  const port = toInt("port", flags.port ?? env["TURNOUT_PORT"] ?? file.port ?? 7700, 0, 65535);
  const concurrency = toInt(
    "concurrency",
    flags.concurrency ?? env["TURNOUT_CONCURRENCY"] ?? file.concurrency ?? 4,
    1,
    256,
  );
  // An empty variable means "not set", as shells and CI files often leave them.
  const databaseUrl = flags.databaseUrl || env["TURNOUT_DATABASE_URL"] || file.database_url || undefined;
  if (databaseUrl !== undefined && !/^postgres(ql)?:\/\//.test(databaseUrl)) {
    throw new TurnoutError("E_CONFIG", "TURNOUT_DATABASE_URL must be a postgres:// URL");
  }

  return {
    host: flags.host ?? env["TURNOUT_HOST"] ?? file.host ?? "127.0.0.1",
    port,
    dataDir,
    configDir,
    ...(configRepo !== undefined ? { configRepo: absoluteRemote(configRepo, cwd) } : {}),
    configBranch,
    ...(configRepoTokenEnv !== undefined ? { configRepoTokenEnv } : {}),
    ...(configRepoSshKey !== undefined ? { configRepoSshKey: path.resolve(cwd, configRepoSshKey) } : {}),
    configPollMs,
    configStartupWaitMs,
    databaseUrl: databaseUrl || undefined,
    artifactStore: resolveArtifactStore(file.artifact_store, env, databaseUrl),
    concurrency,
    // Shared PostgreSQL: another server takes over a dead one's deploy within 15 s (lease 10 s + a 2 s recovery sweep).
    leaseMs: parseTimerDuration(env["TURNOUT_LEASE"] ?? file.lease ?? (databaseUrl ? "10s" : "30s")),
    killGraceMs: parseTimerDuration(env["TURNOUT_KILL_GRACE"] ?? file.kill_grace ?? "10s", 0),
    // 60 s covers a typical deploy, and with kill_grace (10 s) still ends within
    // systemd's default TimeoutStopSec (90 s), after which it would SIGKILL us.
    shutdownGraceMs: parseTimerDuration(env["TURNOUT_SHUTDOWN_GRACE"] || file.shutdown_grace || "60s", 0),
    logFlushMs: 250,
    defaultTimeoutMs: parseTimerDuration(file.default_timeout ?? "1h"),
    defaultIdleTimeoutMs: parseTimerDuration(file.default_idle_timeout ?? "30m"),
    demo: flags.demo ?? env["TURNOUT_DEMO"] === "1",
    bodyLimit: 1024 * 1024,
    headersTimeoutMs: positiveDuration(
      "headers timeout",
      env["TURNOUT_HEADERS_TIMEOUT"] || file.headers_timeout || DEFAULT_HTTP_LIMITS.headersTimeoutMs / 1000,
    ),
    bodyTimeoutMs: positiveDuration(
      "body timeout",
      env["TURNOUT_BODY_TIMEOUT"] || file.body_timeout || DEFAULT_HTTP_LIMITS.bodyTimeoutMs / 1000,
    ),
    uploadMinRate: toInt(
      "upload min rate",
      env["TURNOUT_UPLOAD_MIN_RATE"] || (file.upload_min_rate ?? DEFAULT_HTTP_LIMITS.uploadMinRate),
      0,
      1024 * 1024 * 1024,
    ),
    keepAliveTimeoutMs: positiveDuration(
      "keep-alive timeout",
      env["TURNOUT_KEEP_ALIVE_TIMEOUT"] ||
        file.keep_alive_timeout ||
        DEFAULT_HTTP_LIMITS.keepAliveTimeoutMs / 1000,
    ),
    maxConnections: toInt(
      "max connections",
      env["TURNOUT_MAX_CONNECTIONS"] || (file.max_connections ?? DEFAULT_HTTP_LIMITS.maxConnections),
      1,
      1_000_000,
    ),
    environment: env,
    retention: resolveRetention(file.retention ?? {}, env),
    ...optional("slack", resolveSlackSettings(file.slack, env)),
    notify: resolveNotifySettings(file.notify, env["TURNOUT_PUBLIC_URL"] || file.public_url, env),
    logLevel: oneOf(
      "log level",
      flags.logLevel || env["TURNOUT_LOG_LEVEL"] || file.log_level || "info",
      LOG_LEVELS,
    ),
    logFormat: oneOf("log format", env["TURNOUT_LOG_FORMAT"] || file.log_format || "auto", LOG_FORMATS),
    ...metricsListen(flags.metricsListen || env["TURNOUT_METRICS_LISTEN"] || file.metrics_listen),
  };
}

function optional<K extends string, V>(key: K, value: V | undefined): { [P in K]?: V } {
  return (value === undefined ? {} : { [key]: value }) as { [P in K]?: V };
}

function oneOf<T extends string>(name: string, value: string, allowed: readonly T[]): T {
  if (!(allowed as readonly string[]).includes(value)) {
    throw new TurnoutError("E_CONFIG", `${name} must be one of ${allowed.join(", ")}, not '${value}'`);
  }
  return value as T;
}

/** `127.0.0.1:9770`, `[::1]:9770` or `:9770` (loopback): the metrics-only listener. */
function metricsListen(value: string | undefined): { metricsListen?: { host: string; port: number } } {
  if (!value) return {};
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([A-Za-z0-9.-]*)):([0-9]{1,5})$/.exec(value);
  const port = match ? Number(match[3]) : Number.NaN;
  if (!match || port > 65535) {
    throw new TurnoutError(
      "E_CONFIG",
      `metrics listen address must be HOST:PORT (e.g. 127.0.0.1:9770), not '${value}'`,
    );
  }
  return { metricsListen: { host: match[1] ?? (match[2] || "127.0.0.1"), port } };
}

/** Retention: environment > settings file (`retention:`) > defaults. Durations take `d` (days) too. */
function resolveRetention(
  file: NonNullable<z.infer<typeof fileSchema>["retention"]>,
  env: Record<string, string | undefined>,
): RetentionSettings {
  const d = DEFAULT_RETENTION;
  const duration = (name: string, value: string | number | undefined, fallback: number) =>
    value === undefined || value === "" ? fallback : retentionDuration(name, value);
  const count = (name: string, value: string | number | undefined, fallback: number, min: number) =>
    value === undefined || value === "" ? fallback : toInt(name, value, min, 1_000_000_000);
  return {
    releases: count("retention.releases", env["TURNOUT_RETENTION_RELEASES"] ?? file.releases, d.releases, 1),
    artifactGraceMs: duration(
      "retention.artifact_grace",
      env["TURNOUT_RETENTION_ARTIFACT_GRACE"] ?? file.artifact_grace,
      d.artifactGraceMs,
    ),
    blobGraceMs: duration(
      "retention.blob_grace",
      env["TURNOUT_RETENTION_BLOB_GRACE"] ?? file.blob_grace,
      d.blobGraceMs,
    ),
    logs: count("retention.logs", env["TURNOUT_RETENTION_LOGS"] ?? file.logs, d.logs, 1),
    logAgeMs: duration("retention.log_age", env["TURNOUT_RETENTION_LOG_AGE"] ?? file.log_age, d.logAgeMs),
    gcIntervalMs: duration(
      "retention.gc_interval",
      env["TURNOUT_GC_INTERVAL"] ?? file.gc_interval,
      d.gcIntervalMs,
    ),
    gcAfterDeploys: count(
      "retention.gc_after_deploys",
      env["TURNOUT_GC_AFTER_DEPLOYS"] ?? file.gc_after_deploys,
      d.gcAfterDeploys,
      0,
    ),
  };
}

/** A duration as everywhere (`90s`, `1h30m`), or whole days (`90d`); `off` is 0. */
function retentionDuration(name: string, value: string | number): number {
  const text = String(value).trim();
  if (text === "off") return 0;
  const days = /^([0-9]+)d$/.exec(text);
  try {
    return days ? Number(days[1]) * 86_400_000 : parseDuration(typeof value === "number" ? value : text);
  } catch (error) {
    throw new TurnoutError("E_CONFIG", `${name}: ${(error as Error).message}`);
  }
}

function readSettingsFile(file: string): z.infer<typeof fileSchema> {
  let raw: unknown;
  try {
    // yaml is loaded only when there is a settings file (synchronously: settings are read so, and the
    // package is CommonJS too): a server started with flags and variables alone never loads it.
    const { parse } = createRequire(import.meta.url)("yaml") as typeof import("yaml");
    raw = parse(readFileSync(file, "utf8"));
  } catch (error) {
    throw new TurnoutError("E_CONFIG", `cannot read settings file ${file}: ${(error as Error).message}`);
  }
  const parsed = fileSchema.safeParse(raw ?? {});
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new TurnoutError("E_CONFIG", `${file}: ${issue.path.join(".") || "(root)"}: ${issue.message}`);
  }
  return parsed.data;
}

// A relative path means relative to where the server was started, not to wherever git runs;
// it is made absolute once so the repository always maps to the same mirror. Then the URL
// passes the same check as a manifest's `repo` (E_CONFIG naming the problem stops the start).
function absoluteRemote(url: string, cwd: string): string {
  const absolute = isRelativeRemotePath(url) ? path.resolve(cwd, url) : url;
  remoteKind(absolute);
  return absolute;
}

/** A timeout of at least 100 ms (anything shorter would cut healthy clients), given as a duration. */
function positiveDuration(name: string, value: string | number): number {
  const ms = parseDuration(value);
  if (ms < 100)
    throw new TurnoutError("E_CONFIG", `${name} must be at least 100ms, got ${JSON.stringify(value)}`);
  try {
    return parseTimerDuration(value);
  } catch (error) {
    throw new TurnoutError("E_CONFIG", `${name}: ${(error as Error).message}`);
  }
}

function toInt(name: string, value: string | number, min: number, max: number): number {
  const n = typeof value === "number" ? value : Number(value);
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new TurnoutError(
      "E_CONFIG",
      `${name} must be a whole number from ${min} to ${max}, got ${JSON.stringify(value)}`,
    );
  }
  return n;
}
