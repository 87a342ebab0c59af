import { mkdirSync } from "node:fs";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { ArtifactStore } from "../artifacts/artifact-store.js";
import { PrefetchGrants } from "../artifacts/prefetch-grants.js";
import type { ConfigProvider } from "../config/config-provider.js";
import { configRepoAuth } from "../config/config-repo-auth.js";
import { DirConfigSource } from "../config/dir-config-source.js";
import { GitConfigSource } from "../config/git-config-source.js";
import type { LoadOptions } from "../config/manifest-loader.js";
import { ManifestParser, type ManifestParserOptions } from "../config/manifest-parser.js";
import type { ServerSettings } from "../config/settings.js";
import { Engine } from "../engine/engine.js";
import { GarbageCollector } from "../engine/garbage-collector.js";
import { newOwnerId, ownerIsDead } from "../engine/owner.js";
import { moveLegacyHostedRepos } from "../git/hosted-repos.js";
import { GitMirrors } from "../git/mirrors.js";
import { SharedHostedRepos } from "../git/shared-hosted-repos.js";
import { buildHttpApp } from "../http/app.js";
import { defaultAgentBundle } from "../http/routes/agent-download.js";
import { defaultWebRoot } from "../http/web-ui.js";
import { githubDeploymentsFactory } from "../notify/channels/github-deployments.js";
import { Notifier, type NotifierOptions } from "../notify/notifier.js";
import { openChannels } from "../notify/open-channels.js";
import { createLogger, type Logger, messagesTo } from "../observability/logger.js";
import { ServerMetrics } from "../observability/metrics.js";
import { AgentHub, type AgentHubTiming } from "../providers/fleet/agent-hub.js";
import type { HostCallRouterTiming } from "../providers/fleet/host-call-router.js";
import { startHostCallRouting } from "../providers/fleet/host-call-routing.js";
import type { KeptScripts } from "../providers/fleet/ssh/ssh-connection.js";
import { SshHostOps } from "../providers/fleet/ssh/ssh-host-ops.js";
import { Store } from "../store/store.js";
import { bootstrapAdminToken } from "./admin-token.js";
import { recordConfigReload } from "./config-audit.js";
import { lockDataDir } from "./data-dir-lock.js";
import { DEMO_FIRST_VERSION, ensureDemo, releaseDemoFirstVersion } from "./demo.js";
import { listenForMetrics } from "./metrics-listener.js";
import { serverMetricSources } from "./metrics-sources.js";
import { ServerLog } from "./server-log.js";
import { VERSION } from "./version.js";

export interface RunningServer {
  url: string;
  port: number;
  store: Store;
  engine: Engine;
  config: ConfigProvider;
  /** Connected host agents: HostOps for fleet deploys, connection changes. */
  agents: AgentHub;
  /** Retention's garbage collector. */
  gc: GarbageCollector;
  /** Notifications: the outbox's dispatcher and the configured channels. */
  notifier: Notifier;
  /**
   * The server's Prometheus metrics. `metrics.add(source)` plugs in more
   * gauges read at scrape time (e.g. a notification outbox's backlog).
   */
  metrics: ServerMetrics;
  /** The `--metrics-listen` address's URL, when one was given. */
  metricsUrl: string | undefined;
  /** Set only on the very first start, when the admin token was created. */
  createdAdminToken: string | undefined;
  /**
   * Shuts down: stops taking work, lets running deploys finish within the
   * grace (settings.shutdownGraceMs unless given), interrupts the rest, then
   * closes agent connections, HTTP and the store. Calling it again returns the
   * same shutdown.
   */
  close(options?: CloseOptions): Promise<void>;
}

export interface CloseOptions {
  /** How long running deploys may take to finish (default: settings.shutdownGraceMs). */
  graceMs?: number;
  /** Aborted (a second SIGTERM or Ctrl-C): stop waiting, interrupt running deploys now. */
  now?: AbortSignal;
}

export interface StartOptions {
  /** Dispatcher tuning (tests, benchmarks): batch size, idle poll, send timeout, lease. */
  notify?: Partial<Pick<NotifierOptions, "batchSize" | "idleMs" | "settleMs" | "sendTimeoutMs" | "leaseMs">>;
  /** Send webhook, Slack and IRC notifications from the notification thread (default true). */
  notifyThread?: boolean;
  /** How long start-up waits for the first load of the manifests (default: settings.configStartupWaitMs). */
  configStartupWaitMs?: number;
  /** The manifest parser's limits, and a hold to observe a parse in progress (tests). */
  manifestParser?: Partial<Omit<ManifestParserOptions, "load">>;
  /** Only the messages of the log, one per call (tests); default: the logger below. */
  print?: (line: string) => void;
  /** The server's logger; default: pino on stdout, at settings.logLevel, in settings.logFormat. */
  logger?: Logger;
  /** How often the configuration is looked at again (default: settings.configPollMs). */
  configReloadMs?: number;
  /** Look at repositories on their poll intervals (default true; tests poke by hand). */
  polling?: boolean;
  /** Agent heartbeat and call timeouts (tests shorten them). */
  agentTiming?: Partial<AgentHubTiming>;
  /** Tests: shorter routing sweeps and heartbeats. */
  routerTiming?: Partial<HostCallRouterTiming>;
  /** How long a fleet deploy waits for a disconnected agent (tests shorten it). */
  fleetReconnectGraceMs?: number;
  /** The clock deploy windows and min_interval are read by (tests move it). */
  clock?: () => Date;
  /** Read access for fleet prefetch (tests put one in that refuses, to see a prefetch fail). */
  prefetchGrants?: PrefetchGrants;
}

/** How long webhook delivery ids are remembered for spotting redeliveries. */
const WEBHOOK_MEMORY_MS = 7 * 24 * 3_600_000;

/** Variables a deploy command inherits from the server; everything else stays out. */
const PASSED_THROUGH = ["PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TZ", "TMPDIR", "SSH_AUTH_SOCK"];

/**
 * The composition root of `turnout server`: settings → store → configuration
 * → git → engine → HTTP. Nothing here decides anything; it wires and starts.
 */
export async function startServer(
  settings: ServerSettings,
  options: StartOptions = {},
): Promise<RunningServer> {
  const pretty =
    settings.logFormat === "pretty" || (settings.logFormat === "auto" && process.stdout.isTTY === true);
  const logger =
    options.logger ??
    createLogger({
      level: settings.logLevel,
      pretty: pretty && !options.print,
      ...(options.print ? { write: messagesTo(options.print) } : {}),
    });
  const log = new ServerLog(logger, pretty || options.print !== undefined);
  const print = (line: string) => log.line(line);
  mkdirSync(settings.dataDir, { recursive: true, mode: 0o700 });
  const unlock = lockDataDir(settings.dataDir);
  const cleanups: (() => Promise<void> | void)[] = [unlock];
  try {
    // The demo writes a manifest into the config directory, which a config repository replaces.
    const demoCreated =
      settings.demo && !settings.configRepo && ensureDemo(settings.dataDir, settings.configDir).created;
    if (demoCreated) print(`demo: created the app 'demo' in ${settings.configDir}`);
    // The manifests are loaded first, in the parser's worker thread, while the store opens.
    const parser = new ManifestParser({ ...options.manifestParser, load: loadOptions(settings) });
    cleanups.unshift(() => parser.close());
    const git = new GitMirrors({ dir: path.join(settings.dataDir, "git") });
    cleanups.unshift(() => git.close());
    const opening = openConfig(
      settings,
      git,
      parser,
      print,
      options.configStartupWaitMs ?? settings.configStartupWaitMs,
    );
    opening.catch(() => undefined); // awaited below; it must not count as unhandled meanwhile

    // Bad channel settings stop the start here, before anything runs.
    // The GitHub Deployments channel reads an app's repository and a deploy's parameters when it
    // sends, which is only ever after the store and the configuration below exist.
    const late: { store?: Store; config?: ConfigProvider } = {};
    const github = githubDeploymentsFactory({
      app: (name) => late.config?.current().apps.get(name),
      deploy: (id) => late.store!.deploys.get(id),
    });
    const {
      channels,
      transport,
      close: closeChannels,
    } = await openChannels({
      entries: settings.notify?.channels ?? [],
      serverTypes: [github],
      report: (message) => print(`notify: ${message}`),
      ...(options.notifyThread !== undefined ? { thread: options.notifyThread } : {}),
      ...(settings.notify ? { retry: settings.notify.retry } : {}),
      ...(options.notify?.sendTimeoutMs ? { sendTimeoutMs: options.notify.sendTimeoutMs } : {}),
    });
    cleanups.unshift(closeChannels);

    const store = await Store.open({
      url: settings.databaseUrl,
      sqliteFile: path.join(settings.dataDir, "turnout.db"),
      artifactStore: settings.artifactStore,
    });
    cleanups.unshift(() => store.close());
    // Wrong keys or a missing bucket stop the start here (E_ARTIFACT_STORE), not the first deploy.
    if (store.caps.sharedArtifacts) await store.artifactBlobs.check?.();
    // PostgreSQL: a push to any server reaches every server's copy (git/shared-hosted-repos.ts).
    const sharedHosted = store.caps.sharedBetweenProcesses
      ? new SharedHostedRepos({ log: store.hostedRepos, hostedDir: hostedDir(settings), report: print })
      : undefined;
    if (sharedHosted) git.beforeFetch((url) => sharedHosted.catchUp(url));
    const createdAdminToken = await bootstrapAdminToken(store, settings.dataDir);

    const config = await opening;
    late.store = store;
    late.config = config;
    // Hosted repositories of older versions move to their new place before
    // anything creates one there (engine, pushes); apps whose manifest is
    // still being parsed get the same once it is.
    const moveLegacyRepos = async () => {
      for (const line of await moveLegacyHostedRepos(hostedDir(settings), config.current().apps.values())) {
        print(line);
      }
    };
    await moveLegacyRepos();
    if (config.status().loading.length > 0) {
      void config.loaded().then(moveLegacyRepos, () => undefined);
    }
    // An unreadable head commit is reported once, not at every poll.
    let reported = config.status().lastError?.revision;
    const reload = setInterval(() => {
      config.refresh().then(
        () => {
          // A change is told by the onChange listener below; an unreadable head changes nothing active.
          const unreadable = config.status().lastError?.revision;
          if (unreadable !== undefined && unreadable !== reported) log.refused(config);
          reported = unreadable;
        },
        (error: Error) => log.reloadFailed(error.message),
      );
    }, options.configReloadMs ?? settings.configPollMs);
    const stopReload = () => clearInterval(reload);
    cleanups.unshift(stopReload);
    // Whoever refreshed it (the timer above, a webhook on the config repository): say what changed.
    cleanups.unshift(
      config.onChange((previous, next) => {
        log.configChanged(previous, next, config);
        void recordConfigReload(store, previous, next).catch((error: Error) =>
          print(`config: could not record the reload in the audit trail: ${error.message}`),
        );
      }),
    );

    // Providers redeliver webhooks within hours, never after a week: forget older deliveries.
    const pruneDeliveries = () =>
      store.webhooks
        .prune(new Date(Date.now() - WEBHOOK_MEMORY_MS).toISOString())
        .catch((error: Error) => print(`webhooks: pruning deliveries failed: ${error.message}`));
    void pruneDeliveries();
    const deliveries = setInterval(pruneDeliveries, 3_600_000);
    deliveries.unref();
    cleanups.unshift(() => clearInterval(deliveries));

    const baseEnv: Record<string, string> = {};
    for (const name of PASSED_THROUGH) {
      const value = settings.environment[name];
      if (value !== undefined) baseEnv[name] = value;
    }
    // One identity for this process: it holds deploy leases and agent connections.
    const owner = newOwnerId();
    const metrics = new ServerMetrics();
    // On PostgreSQL every server serves every artifact: the data directory caches the shared store.
    const artifacts = new ArtifactStore({
      dir: path.join(settings.dataDir, "artifacts"),
      ...(store.caps.sharedArtifacts ? { shared: store.artifactBlobs } : {}),
    });
    const prefetchGrants = options.prefetchGrants ?? new PrefetchGrants();
    // SSH hosts known to hold this version's remote script: asked once per host and server.
    const keptScripts: KeptScripts = new Set();
    // Bases of the differences sent to agents (manifests) and SSH hosts (listings).
    const baseManifests = async (digest: string) => {
      const info = await store.artifacts.find(digest);
      return info ? { app: info.app, manifest: await artifacts.manifest(digest) } : undefined;
    };
    const agents = new AgentHub({
      store,
      owner,
      timing: options.agentTiming,
      report: print,
      // Bases of the manifest differences sent to agents (protocol 2).
      manifests: baseManifests,
    });
    await agents.start((holder) => ownerIsDead(holder, owner, store.caps.sharedBetweenProcesses));
    cleanups.unshift(() => agents.close());
    if (settings.databaseUrl && store.caps.sharedBetweenProcesses) {
      // Several servers on one PostgreSQL: agents another server holds are reached through it.
      const router = await startHostCallRouting({
        store,
        url: settings.databaseUrl,
        owner,
        agents,
        report: print,
        ...(options.routerTiming ? { timing: options.routerTiming } : {}),
      });
      cleanups.unshift(() => router.close());
    }

    const engine = new Engine({
      store,
      config,
      git,
      owner,
      polling: options.polling !== false,
      ...(options.clock ? { clock: options.clock } : {}),
      dataDir: settings.dataDir,
      concurrency: settings.concurrency,
      leaseMs: settings.leaseMs,
      killGraceMs: settings.killGraceMs,
      logFlushMs: settings.logFlushMs,
      baseEnv,
      fleet: {
        store,
        artifacts,
        agents: { hosts: () => agents.hosts(), opsFor: (name, deployId) => agents.opsFor(name, deployId) },
        ssh: { open: (host) => new SshHostOps(host, { manifests: baseManifests, keptScripts }) },
        onHostsChange: (listener) => agents.onChange(() => listener()),
        ...(options.fleetReconnectGraceMs !== undefined
          ? { reconnectGraceMs: options.fleetReconnectGraceMs }
          : {}),
        onStaged: (host, outcome, seconds, bytes) => metrics.staged(host, outcome, seconds, bytes),
        prefetchGrants,
      },
      report: (message) => log.trouble(`engine: ${message}`),
      events: {
        started: (deploy) => {
          log.started(deploy);
          metrics.deployStarted(deploy);
        },
        finished: (deploy) => {
          log.finished(deploy);
          metrics.deployFinished(deploy);
        },
        recovered: (deploy) => {
          log.recovered(deploy);
          metrics.deployFinished(deploy);
        },
      },
    });
    await engine.start();
    for (const source of serverMetricSources({
      store,
      engine,
      connectedAgents: () => agents.connectedHosts().length,
    })) {
      metrics.add(source);
    }
    const stopEngine = () => engine.stop();
    cleanups.unshift(stopEngine);

    // Retention: on its own timer, and on demand through the API.
    const gc = new GarbageCollector({ store, artifacts, settings: settings.retention, report: print });
    gc.start();
    cleanups.unshift(() => gc.stop());

    const http = await buildHttpApp({
      engine,
      store,
      settings,
      version: VERSION,
      agents,
      artifacts,
      prefetchGrants,
      gc,
      webRoot: defaultWebRoot(),
      agentBundle: defaultAgentBundle(),
      ...(settings.slack ? { slack: settings.slack } : {}),
      ...(sharedHosted ? { sharedHosted } : {}),
      logger: logger.child({ component: "http" }),
      metrics,
      observeRequest: (request, reply, seconds) =>
        metrics.request(request.method, request.routeOptions.url ?? "(unmatched)", reply.statusCode, seconds),
    });
    await http.listen({
      port: settings.port,
      host: settings.host,
      listenTextResolver: (address) => `http: accepting connections on ${address}`,
    });
    cleanups.unshift(() => http.close());
    // Agent sockets are long-lived: they are closed before the HTTP server waits for its connections.
    cleanups.unshift(() => agents.close());
    const port = (http.server.address() as AddressInfo).port;
    let metricsUrl: string | undefined;
    if (settings.metricsListen) {
      const listener = await listenForMetrics(metrics, settings.metricsListen);
      cleanups.unshift(() => listener.close());
      metricsUrl = listener.url;
      log.line(`metrics: GET ${listener.url}/metrics, without a token`, {
        event: "metrics.listening",
        url: listener.url,
      });
    }
    const url = `http://${settings.host.includes(":") ? `[${settings.host}]` : settings.host}:${port}`;

    // Notifications drain the outbox beside the engine, woken by its changes.
    const notifier = new Notifier({
      store: store.notify,
      channels,
      ...(transport ? { transport } : {}),
      config: () => config.current(),
      loading: (app) => config.status().loading.some((l) => l.app === app),
      owner,
      publicUrl: settings.notify?.publicUrl ?? url,
      ...(settings.notify ? { retry: settings.notify.retry } : {}),
      report: (message) => print(message),
      ...options.notify,
    });
    notifier.start();
    // Stopped after the engine (cleanups run last-registered first): the last deploys' events go out too.
    cleanups.splice(cleanups.indexOf(stopEngine) + 1, 0, () => notifier.stop());
    // Host reports change nothing in the outbox (a drift event waits at most the idle tick): with a
    // thousand agents reporting through a deploy, waking on each was two outbox queries per report.
    cleanups.unshift(
      engine.changes((change) => {
        if (change.type !== "hosts") notifier.wake();
      }),
    );

    const status = config.status();
    const from =
      status.source.kind === "git" ? `${status.source.url}@${status.source.branch}` : settings.configDir;
    const loading = config.status().loading;
    if (loading.length === 0) {
      log.apps(from, [...config.current().apps.keys()]);
      log.config(config);
    } else {
      // Start-up does not wait on a slow manifest: its app is served once parsed.
      print(`config: still loading ${loading.map((l) => l.file).join(", ")}`);
      void config.loaded().then(() => {
        log.apps(from, [...config.current().apps.keys()]);
        log.config(config);
      });
    }
    if (createdAdminToken) log.adminToken(createdAdminToken, path.join(settings.dataDir, "admin-token"));
    if (demoCreated) {
      // The demo's manifest is tiny, but on a busy machine its parse may still be
      // under way: its first release waits for it. A refusal is reported, not fatal.
      await config.loaded();
      await releaseDemoFirstVersion(engine).then(
        (first) =>
          print(
            `demo: deploying ${DEMO_FIRST_VERSION} to staging (demo/staging#${first.number}), its first release`,
          ),
        (error: Error) => print(`demo: could not deploy ${DEMO_FIRST_VERSION} to staging: ${error.message}`),
      );
    }
    // Last, so that whoever waits for this line finds the server ready, its demo release queued.
    log.listening(VERSION, url, settings.databaseUrl ? "PostgreSQL" : `SQLite in ${settings.dataDir}`);

    let closing: Promise<void> | undefined;
    return {
      url,
      port,
      store,
      engine,
      config,
      agents,
      gc,
      notifier,
      metrics,
      metricsUrl,
      createdAdminToken,
      close: (options: CloseOptions = {}) => {
        closing ??= (async () => {
          // Running deploys may need agents, blob downloads and their log
          // followers: those close only after the last deploy ended.
          const graceMs = options.graceMs ?? settings.shutdownGraceMs;
          log.shuttingDown(engine.runningDeploys(), graceMs);
          stopReload();
          await engine.finishRunning({
            graceMs,
            now: options.now,
            interrupting: (deploys, why) => log.interrupting(deploys, why, graceMs),
          });
          log.closing();
          await runCleanups(cleanups);
          log.stopped();
        })();
        return closing;
      },
    };
  } catch (error) {
    await runCleanups(cleanups);
    throw error;
  }
}

async function runCleanups(cleanups: (() => Promise<void> | void)[]): Promise<void> {
  for (const cleanup of cleanups) {
    try {
      await cleanup();
    } catch {
      // Keep closing the rest.
    }
  }
}

function loadOptions(settings: ServerSettings): LoadOptions {
  return {
    defaultTimeoutMs: settings.defaultTimeoutMs,
    defaultIdleTimeoutMs: settings.defaultIdleTimeoutMs,
    environment: settings.environment,
    hostedReposDir: hostedDir(settings),
    notifyChannels: (settings.notify?.channels ?? []).map((c) => c.name),
  };
}

async function openConfig(
  settings: ServerSettings,
  git: GitMirrors,
  parser: ManifestParser,
  print: (line: string) => void,
  startupWaitMs: number,
): Promise<ConfigProvider> {
  if (!settings.configRepo) return DirConfigSource.open(settings.configDir, { parser, startupWaitMs });
  return GitConfigSource.open({
    url: settings.configRepo,
    branch: settings.configBranch,
    auth: configRepoAuth(settings),
    git,
    parser,
    report: print,
    startupWaitMs,
  });
}

function hostedDir(settings: ServerSettings): string {
  return path.join(settings.dataDir, "hosted");
}
