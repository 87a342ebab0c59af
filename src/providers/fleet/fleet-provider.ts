import { availableParallelism } from "node:os";
import path from "node:path";
import type { Readable } from "node:stream";
import type { PrefetchGrants } from "../../artifacts/prefetch-grants.js";
import type { AppConfig } from "../../domain/app-config.js";
import { type ArtifactManifest, hostReleaseId } from "../../domain/artifact.js";
import { type BuildInputs, buildEnvironment, buildInputsOf, buildKey } from "../../domain/build-key.js";
import type { Deploy, FailureCode } from "../../domain/deploy.js";
import { formatDuration } from "../../domain/duration.js";
import { isTurnoutError, TurnoutError } from "../../domain/errors.js";
import type { FleetDeployConfig, Host, SshHostConfig } from "../../domain/fleet.js";
import { appTarget, defaultStageConcurrency, inFleet } from "../../domain/fleet.js";
import { placeholderValues, substitute } from "../../domain/placeholders.js";
import type { GitTreeReader } from "../../git/tree-reader.js";
import type { Store } from "../../store/store.js";
import { runProcess } from "../process-runner.js";
import { FleetPrefetch } from "./fleet-prefetch.js";
import type { BlobSource, HostLog, HostOps, PrefetchBlob } from "./host-ops.js";
import { type FleetTarget, orchestrate, type StagingObserver } from "./orchestrator.js";

/**
 * The `fleet` provider: build in the workspace, turn the result into a
 * content-addressed artifact (or reuse the one built from the same build
 * inputs, by any environment of the app, or take an uploaded one), pick the
 * environment's hosts (agents by labels, SSH hosts by address) and hand them
 * to the orchestrator.
 */
export interface ArtifactSource {
  /** `onBlobs`: told of blobs as they become readable, while the rest is still being read (prefetch). */
  fromDirectory(
    dir: string,
    options?: { exclude?: string[]; onBlobs?: (blobs: PrefetchBlob[]) => void },
  ): Promise<{ digest: string; manifest: ArtifactManifest; files: number; bytes: number }>;
  fromGitTree(
    reader: GitTreeReader,
    subdir: string | null,
    options?: { onBlobs?: (blobs: PrefetchBlob[]) => void },
  ): Promise<{ digest: string; manifest: ArtifactManifest; files: number; bytes: number } | null>;
  manifest(digest: string): Promise<ArtifactManifest>;
  openBlob(sha256: string): Promise<Readable>;
  hasBlob(sha256: string): Promise<boolean>;
  /**
   * Runs `fn` where the garbage collector removes nothing: choosing or
   * building an artifact and recording that the deploy uses it happen in one
   * such section (see artifacts/store-gate.ts).
   */
  hold<T>(fn: () => Promise<T>): Promise<T>;
}

export interface AgentDirectory {
  /** Every agent host the server knows, connected or not. */
  hosts(): Promise<Host[]>;
  /** The host's operations for this deploy (possibly through the server holding the agent); undefined when not connected. */
  opsFor(name: string, deployId: number): HostOps | undefined;
}

export interface SshConnector {
  open(config: SshHostConfig): HostOps & { close(): Promise<void> };
}

export interface FleetDeps {
  store: Store;
  artifacts: ArtifactSource;
  agents: AgentDirectory;
  ssh: SshConnector;
  /** How long a deploy waits for a disconnected agent to come back before counting its host failed (default 15 s). */
  reconnectGraceMs?: number;
  /** Told how each host's staging went (the server's metrics). */
  onStaged?: StagingObserver;
  /** Read access for blobs offered to agents while the artifact is built; absent: no prefetch. */
  prefetchGrants?: PrefetchGrants;
}

export interface FleetRun {
  deploy: Deploy;
  app: AppConfig;
  config: FleetDeployConfig;
  /** Where the workspace is (or will be): for TURNOUT_WORKSPACE and the like. */
  workspace: string;
  /** Checks the deploy's commits out into `workspace`, once, when something needs the files. */
  ensureWorkspace(): Promise<string>;
  /** The primary commit's tree straight from its mirror (single-repo apps): artifacts without a checkout. */
  gitTree?: GitTreeReader;
  env: Record<string, string>;
  /** The server's basic variables (PATH, HOME, …): the build gets these and its inputs, nothing else. */
  baseEnv: Record<string, string>;
  killGraceMs: number;
  log: HostLog;
  /** One host's lines: a channel of the deploy log, masked on its own stream (see engine/log-channel.ts). */
  hostLog(name: string): HostLog;
  /** Masks secrets in text stored outside the log (per-host errors). */
  mask(text: string): string;
  write(text: string): void;
  signal: AbortSignal;
  /** The release fingerprint before the artifact (commits + per-app revision): recorded with a new artifact. */
  fingerprint: string;
  /** Repairs (reconcile, rollback after an interrupt) skip hosts already on the release. */
  repair: boolean;
  setPhase(phase: string, status?: "waiting" | "running"): Promise<void>;
  awaitApproval(timeoutMs: number): Promise<"approved" | "aborted" | "timeout">;
}

export type FleetOutcome =
  | { status: "succeeded"; artifact: string }
  | { status: "failed"; errorCode: FailureCode; errorMessage: string }
  | { status: "cancelled"; errorMessage: string };

export async function runFleetDeploy(deps: FleetDeps, given: FleetRun): Promise<FleetOutcome> {
  const run: FleetRun = { ...given, config: withPlaceholders(given.config, given.deploy) };
  const prefetch: Prefetching = {};
  try {
    return await deployFleet(deps, run, prefetch);
  } finally {
    // Calls still in flight at the end would fetch for nothing: cancelled.
    prefetch.current?.stop();
  }
}

/** The deploy's prefetch, once the artifact is being read (see fleet-prefetch.ts). */
interface Prefetching {
  current?: FleetPrefetch;
}

async function deployFleet(deps: FleetDeps, run: FleetRun, prefetch: Prefetching): Promise<FleetOutcome> {
  const { deploy, config, log } = run;
  const artifact = await artifactFor(deps, run, prefetch);
  if ("status" in artifact) return artifact;
  const releaseId = hostReleaseId(artifact.digest);
  const manifest = artifact.manifest ?? (await deps.artifacts.manifest(artifact.digest));
  const blobs: BlobSource = { open: (sha) => deps.artifacts.openBlob(sha) };

  const { targets, close, readSshInventories } = await targetsFor(deps, run);
  try {
    if (deploy.trigger === "promote" && deploy.slot) {
      return await promote(deps, run, targets, deploy.slot, artifact.digest);
    }
    const outcome = await orchestrate({
      deploy,
      releaseId,
      artifact: artifact.digest,
      manifest,
      blobs,
      config: withStageConcurrency(config, targets),
      slot: deploy.slot ?? "current",
      targets,
      skipHostsOnRelease: run.repair,
      fleet: deps.store.fleet,
      log,
      hostLog: run.hostLog,
      mask: run.mask,
      signal: run.signal,
      env: run.env,
      runOnServer: (argv, host) => runOnServer(run, argv, host),
      awaitApproval: run.awaitApproval,
      setPhase: run.setPhase,
      ...(deps.reconnectGraceMs !== undefined ? { reconnectGraceMs: deps.reconnectGraceMs } : {}),
      ...(deps.onStaged ? { onStaged: deps.onStaged } : {}),
    });
    if (outcome.ok) {
      log(
        `==> ${outcome.switched} host(s) switched to ${releaseId}${outcome.skipped ? `, ${outcome.skipped} already on it` : ""}`,
      );
      return { status: "succeeded", artifact: artifact.digest };
    }
    if (outcome.code === "cancelled") return { status: "cancelled", errorMessage: outcome.message };
    return { status: "failed", errorCode: outcome.code, errorMessage: outcome.message };
  } finally {
    // Not when the server is shutting down or the deploy was cancelled: no more talking to hosts then.
    if (!run.signal.aborted) await readSshInventories();
    await close();
  }
}

/**
 * `turnout switch --slot`: on every host, `current` takes the slot's target
 * (atomically per host), then restart and health check. A host that fails is
 * switched back; the deploy fails if any did.
 */
async function promote(
  deps: FleetDeps,
  run: FleetRun,
  targets: FleetTarget[],
  slot: string,
  digest: string,
): Promise<FleetOutcome> {
  const { deploy, config } = run;
  await deps.store.fleet.addDeployHosts(
    deploy.id,
    targets.map((t) => ({ id: t.hostId, name: t.name })),
    hostReleaseId(digest),
  );
  let failed = 0;
  for (const target of targets) {
    const hostLog = run.hostLog(target.name);
    const ops = target.ops();
    if (!ops) {
      failed++;
      hostLog("not connected");
      await deps.store.fleet.updateDeployHost(deploy.id, target.hostId, {
        step: "failed",
        error: "not connected",
      });
      continue;
    }
    let previous: string | null = null;
    const place = appTarget(deploy.app, config.path);
    try {
      const switched = await ops.promoteSlot(place, slot);
      previous = switched.previous;
      hostLog(`current → ${switched.current} (was ${switched.previous ?? "nothing"})`);
      await deps.store.fleet.updateDeployHost(deploy.id, target.hostId, {
        step: "switched",
        switched: true,
        previousRelease: previous,
      });
      if (
        config.restart &&
        (await ops.run(place, config.restart, run.env, config.timeoutMs, hostLog, run.signal)) !== 0
      ) {
        throw new Error("restart failed");
      }
      if (config.health && !(await ops.health(place, config.health, hostLog, run.signal)))
        throw new Error("health check failed");
      await deps.store.fleet.setTarget({
        hostId: target.hostId,
        app: deploy.app,
        env: deploy.env,
        desiredRelease: switched.current,
        actualRelease: switched.current,
        previousRelease: previous,
        deployId: deploy.id,
      });
      await deps.store.fleet.updateDeployHost(deploy.id, target.hostId, { step: "healthy" });
    } catch (error) {
      failed++;
      hostLog(`failed: ${(error as Error).message}`);
      if (previous) await ops.switchTo(place, previous, "current").catch(() => undefined);
      await deps.store.fleet.updateDeployHost(deploy.id, target.hostId, {
        step: previous ? "rolled_back" : "failed",
        error: run.mask((error as Error).message),
      });
    }
  }
  if (failed > 0) {
    return {
      status: "failed",
      errorCode: "E_ROLLED_BACK",
      errorMessage: `${failed} host(s) could not switch to slot ${slot}`,
    };
  }
  return { status: "succeeded", artifact: digest };
}

/**
 * The deploy's artifact: given (an upload, or the release a rollback brings
 * back), reused (built before for the same release), read from git, or
 * built. Whichever it is, it is recorded on the deploy before anything is
 * staged, in the same store section as the choice, so the garbage collector
 * keeps it from then on (see ArtifactSource.hold). A build command runs
 * outside that section: it may take long, and touches no stored blob.
 */
async function artifactFor(
  deps: FleetDeps,
  run: FleetRun,
  prefetch: Prefetching,
): Promise<{ digest: string; manifest?: ArtifactManifest } | FleetOutcome> {
  const { deploy, log } = run;
  const use = async <T extends { digest: string }>(artifact: T): Promise<T> => {
    await deps.store.deploys.recordArtifact(deploy.id, artifact.digest);
    return artifact;
  };
  if (deploy.artifact) {
    const given = deploy.artifact;
    log(
      deploy.promotedFrom
        ? `==> deploying artifact ${given.slice(0, 12)} of ${deploy.app}/${deploy.promotedFrom.env}#${deploy.promotedFrom.deployNumber} (promoted: not built again)`
        : deploy.trigger === "api" || deploy.trigger === "cli" || deploy.trigger === "ui"
          ? `==> deploying the uploaded artifact ${given.slice(0, 12)}`
          : `==> deploying artifact ${given.slice(0, 12)} of the release being brought back`,
    );
    return deps.artifacts.hold(async () => {
      if (!(await deps.artifacts.hasBlob(given))) throw artifactGone(given);
      return use({ digest: given });
    });
  }
  // Reuse is by everything the build reads (domain/build-key.ts), not by the
  // release: two environments whose builds read the same share an artifact,
  // and one whose build reads anything else gets its own.
  const inputs = buildInputsOf(run.app, deploy, run.config);
  const key = buildKey(inputs);
  const reused = await deps.artifacts.hold(async () => {
    const known = await deps.store.artifacts.byBuildKey(deploy.app, key);
    // A record whose files the collector removed (or another server holds) is built again.
    if (!known || !(await deps.artifacts.hasBlob(known.digest))) return undefined;
    return use({ digest: known.digest });
  });
  if (reused) {
    log(
      `==> reusing artifact ${reused.digest.slice(0, 12)}: built before from the same inputs (build key ${key.slice(0, 12)})`,
    );
    return reused;
  }
  const build = run.config.build;
  if (!build && run.gitTree) {
    const fromGit = await artifactFromGit(deps, run, run.gitTree, inputs, key, prefetch);
    if (fromGit) return fromGit;
  }
  await run.ensureWorkspace();
  if (build) {
    await run.setPhase("build");
    const argv = build.command ?? [
      "bash",
      "--noprofile",
      "--norc",
      "-e",
      "-o",
      "pipefail",
      "-c",
      build.script!,
      "turnout-build",
    ];
    log(`==> building: ${build.command ? JSON.stringify(build.command) : "build script (bash)"}`);
    const started = Date.now();
    const result = await runProcess({
      argv,
      cwd: run.workspace,
      env: buildEnvironment(inputs, run.baseEnv, run.workspace),
      timeoutMs: run.config.timeoutMs,
      idleTimeoutMs: run.config.idleTimeoutMs,
      killGraceMs: run.killGraceMs,
      signal: run.signal,
      onOutput: run.write,
    });
    if (result.reason === "aborted")
      return { status: "cancelled", errorMessage: "cancelled during the build" };
    if (result.reason !== "exit" || result.exitCode !== 0) {
      const why = result.reason === "exit" ? `exited with status ${result.exitCode}` : result.reason;
      return { status: "failed", errorCode: "command_failed", errorMessage: `the build ${why}` };
    }
    log(`==> built in ${formatDuration(Date.now() - started)}`);
  }
  await run.setPhase("artifact");
  const dir = path.resolve(run.workspace, inputs.artifactPath);
  if (dir !== run.workspace && !dir.startsWith(`${run.workspace}${path.sep}`)) {
    return {
      status: "failed",
      errorCode: "internal",
      errorMessage: "the artifact path leaves the workspace",
    };
  }
  const prefetching = await startPrefetch(deps, run, prefetch);
  return deps.artifacts.hold(async () => {
    let stored: Awaited<ReturnType<ArtifactSource["fromDirectory"]>>;
    try {
      stored = await deps.artifacts.fromDirectory(dir, {
        exclude: inputs.exclude,
        ...(prefetching ? { onBlobs: (blobs: PrefetchBlob[]) => prefetching.offer(blobs) } : {}),
      });
    } finally {
      prefetching?.finish();
    }
    return use(await recordBuilt(deps, run, stored, key));
  });
}

function artifactGone(digest: string): TurnoutError {
  return new TurnoutError(
    "E_NOT_FOUND",
    `artifact ${digest.slice(0, 12)} is no longer stored (removed by retention, or lost)`,
    { digest },
  );
}

/**
 * Nothing to build: the artifact is the commit's tree (or its `artifact`
 * subdirectory), read from the mirror with no checkout, hashing only blobs
 * not seen before. Undefined when a checkout is needed after all (the tree
 * has submodules or .gitattributes, or git cannot list it here).
 */
async function artifactFromGit(
  deps: FleetDeps,
  run: FleetRun,
  reader: GitTreeReader,
  inputs: BuildInputs,
  key: string,
  prefetch: Prefetching,
): Promise<{ digest: string; manifest: ArtifactManifest } | undefined> {
  await run.setPhase("artifact");
  const subdir = inputs.artifactPath === "." ? null : path.posix.normalize(inputs.artifactPath);
  const prefetching = await startPrefetch(deps, run, prefetch);
  return deps.artifacts.hold(async () => {
    let stored: Awaited<ReturnType<ArtifactSource["fromGitTree"]>>;
    try {
      stored = await deps.artifacts.fromGitTree(
        reader,
        subdir,
        prefetching ? { onBlobs: (blobs) => prefetching.offer(blobs) } : {},
      );
    } catch (error) {
      if (!isTurnoutError(error) || error.code !== "E_GIT") throw error;
      run.log(`==> cannot read the tree from git (${error.message}); using a checkout`);
      return undefined;
    } finally {
      prefetching?.finish();
    }
    if (!stored) {
      run.log("==> the tree has submodules or .gitattributes: building the artifact from a checkout");
      return undefined;
    }
    const built = await recordBuilt(deps, run, stored, key);
    await deps.store.deploys.recordArtifact(run.deploy.id, built.digest);
    return built;
  });
}

async function recordBuilt(
  deps: FleetDeps,
  run: FleetRun,
  stored: { digest: string; manifest: ArtifactManifest; files: number; bytes: number },
  key: string,
): Promise<{ digest: string; manifest: ArtifactManifest }> {
  await deps.store.artifacts.record({
    digest: stored.digest,
    app: run.deploy.app,
    fingerprint: run.fingerprint,
    files: stored.files,
    bytes: stored.bytes,
    source: "built",
  });
  // After the artifact's row: a key never names an artifact that is not whole.
  await deps.store.artifacts.recordBuild(run.deploy.app, key, stored.digest);
  run.log(`==> artifact ${stored.digest.slice(0, 12)}: ${stored.files} files, ${stored.bytes} bytes`);
  return { digest: stored.digest, manifest: stored.manifest };
}

/**
 * Prefetch to the agents this deploy will stage on: the environment's
 * fleet by granted labels (the same selection as targetsFor), for a deploy
 * that stages everywhere (a repair skips hosts already on the release, and
 * the release is not known yet). SSH hosts get none (see docs/architecture.md).
 */
async function startPrefetch(
  deps: FleetDeps,
  run: FleetRun,
  prefetch: Prefetching,
): Promise<FleetPrefetch | undefined> {
  if (!deps.prefetchGrants || run.repair || !run.config.hostLabels || run.signal.aborted) return undefined;
  // A second tree (a checkout after the git read gave up) takes over from the first.
  prefetch.current?.stop();
  const hosts = await fleetAgents(deps, run);
  if (hosts.length === 0) return undefined;
  prefetch.current = new FleetPrefetch({
    app: run.deploy.app,
    grants: deps.prefetchGrants,
    targets: hosts.map((host) => ({
      hostId: host.id,
      name: host.name,
      ops: () => deps.agents.opsFor(host.name, run.deploy.id),
    })),
    log: run.log,
    signal: run.signal,
  });
  return prefetch.current;
}

/** The agent hosts of the environment's fleet: granted labels and apps only. */
async function fleetAgents(deps: FleetDeps, run: FleetRun): Promise<Host[]> {
  if (!run.config.hostLabels) return [];
  // A host's own hello cannot put it into another app's fleet.
  return (await deps.agents.hosts()).filter(
    (host) => host.kind === "agent" && inFleet(host, run.deploy.app, run.config),
  );
}

async function targetsFor(
  deps: FleetDeps,
  run: FleetRun,
): Promise<{ targets: FleetTarget[]; close(): Promise<void>; readSshInventories(): Promise<void> }> {
  const targets: FleetTarget[] = [];
  const opened: (HostOps & { close(): Promise<void> })[] = [];
  const sshHosts: { id: number; ops: HostOps }[] = [];
  if (run.config.hostLabels) {
    // Pool state is this app's: another app's failure on a shared host does not count here.
    const depooled = await deps.store.fleet.depooled(run.deploy.app);
    for (const host of await fleetAgents(deps, run)) {
      targets.push({
        hostId: host.id,
        name: host.name,
        depooled: depooled.has(host.id),
        ops: () => deps.agents.opsFor(host.name, run.deploy.id),
      });
    }
  }
  for (const ssh of run.config.ssh) {
    const { id, poolState } = await deps.store.fleet.ensureSshHost(
      run.deploy.app,
      ssh.name,
      ssh.address,
      ssh.labels,
    );
    const ops = deps.ssh.open(ssh);
    opened.push(ops);
    sshHosts.push({ id, ops });
    targets.push({
      hostId: id,
      name: ssh.name,
      depooled: poolState === "depooled",
      ops: () => ops,
      reconnects: false,
    });
  }
  targets.sort((a, b) => a.name.localeCompare(b.name));
  return {
    targets,
    close: async () => {
      await Promise.allSettled(opened.map((o) => o.close()));
    },
    // SSH hosts report nothing by themselves: what each holds is read after
    // every deploy that reached it, so drift (a pointer switched or a release
    // deleted by hand) shows as it does for agents. A host that cannot be
    // read keeps its last reading.
    readSshInventories: async () => {
      await Promise.allSettled(
        sshHosts.map(async ({ id, ops }) => deps.store.hosts.saveSshInventory(id, await ops.inventory())),
      );
    },
  };
}

/** `strategy.concurrency` left out: chosen for this fleet and this server (domain/fleet.ts). */
function withStageConcurrency(config: FleetDeployConfig, targets: FleetTarget[]): FleetDeployConfig {
  if (config.strategy.stageConcurrency !== null) return config;
  const ssh = targets.filter((t) => t.reconnects === false).length;
  const chosen = defaultStageConcurrency({ agents: targets.length - ssh, ssh }, availableParallelism());
  return { ...config, strategy: { ...config.strategy, stageConcurrency: chosen } };
}

/** depool/pool commands run on the Turnout server, told the host by TURNOUT_HOST and `{host}`. */
async function runOnServer(run: FleetRun, argv: string[], host: string): Promise<number> {
  const result = await runProcess({
    argv: argv.map((a) => a.replaceAll("{host}", host)),
    cwd: await run.ensureWorkspace(),
    env: { ...run.env, TURNOUT_HOST: host },
    timeoutMs: run.config.timeoutMs,
    idleTimeoutMs: run.config.idleTimeoutMs,
    killGraceMs: run.killGraceMs,
    signal: new AbortController().signal,
    onOutput: run.write,
  });
  return result.reason === "exit" ? (result.exitCode ?? 1) : 1;
}

/**
 * The fleet's commands with the deploy's placeholders filled in, inside single
 * argv elements as everywhere else (`{host}` of depool/pool is filled per host
 * when they run).
 */
function withPlaceholders(config: FleetDeployConfig, deploy: Deploy): FleetDeployConfig {
  const values = placeholderValues(deploy);
  const sub = (argv: string[] | undefined) => (argv ? substitute(argv, values) : undefined);
  return {
    ...config,
    ...(config.build
      ? {
          build: {
            ...config.build,
            ...(config.build.command ? { command: sub(config.build.command)! } : {}),
          },
        }
      : {}),
    ...(config.beforeSwitch ? { beforeSwitch: sub(config.beforeSwitch)! } : {}),
    ...(config.restart ? { restart: sub(config.restart)! } : {}),
    ...(config.depool ? { depool: sub(config.depool)! } : {}),
    ...(config.pool ? { pool: sub(config.pool)! } : {}),
    ...(config.health?.command ? { health: { ...config.health, command: sub(config.health.command)! } } : {}),
  };
}
