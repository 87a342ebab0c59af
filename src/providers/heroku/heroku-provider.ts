import { execFile } from "node:child_process";
import { setTimeout as sleep } from "node:timers/promises";
import type { HerokuDeployConfig } from "../../domain/app-config.js";
import type { Deploy, FailureCode } from "../../domain/deploy.js";
import { formatDuration } from "../../domain/duration.js";
import { HerokuApi, HerokuApiError, type HerokuRelease } from "./heroku-api.js";

/** The largest source tarball sent (Heroku's own limit on a source is far below). */
const MAX_TARBALL = 1024 * 1024 * 1024;

export interface HerokuRun {
  deploy: Deploy;
  config: HerokuDeployConfig;
  /** The key, read by config/ from the server environment variable the manifest names. */
  apiKey: string | undefined;
  /** The checkout of the deployed commit (made on first use: a rollback by release id needs none). */
  ensureWorkspace(): Promise<string>;
  /** For a rollback: the Heroku release of the deploy brought back (null: unknown, so build its commit again). */
  rollbackTo: string | null;
  baseEnv: Record<string, string>;
  log(line: string): void;
  write(text: string): void;
  signal: AbortSignal;
  setPhase(phase: string): Promise<void>;
  /** How often a pending build or release is looked at again (default 1 s). */
  pollMs?: number;
}

export type HerokuOutcome =
  | { status: "succeeded"; providerRelease: string }
  | { status: "failed"; errorCode: FailureCode; errorMessage: string }
  | { status: "cancelled"; errorMessage: string };

/**
 * A deploy through Heroku's Platform API: the deployed commit as a source
 * tarball (`git archive`), uploaded, built (its output streamed into the
 * deploy log), then its release followed until it is live. A rollback asks
 * Heroku to roll back to the Heroku release the earlier deploy made.
 */
export async function runHerokuDeploy(run: HerokuRun): Promise<HerokuOutcome> {
  const { config, deploy, log } = run;
  if (!run.apiKey)
    return failed(
      "internal",
      `the server has no Heroku API key in ${config.apiKeyEnv} (see docs/providers.md)`,
    );
  const timeout = AbortSignal.timeout(config.timeoutMs);
  const signal = AbortSignal.any([run.signal, timeout]);
  const api = new HerokuApi({ apiUrl: config.apiUrl, apiKey: run.apiKey, signal });
  const pollMs = run.pollMs ?? 1000;
  const app = config.herokuApp;
  try {
    if (run.rollbackTo) {
      log(`==> asking Heroku to roll ${app} back to release ${run.rollbackTo}`);
      const release = await api.rollback(app, run.rollbackTo);
      return await awaitRelease(api, app, release, pollMs, log, signal);
    }
    await run.setPhase("build");
    const workspace = await run.ensureWorkspace();
    const tarball = await sourceTarball(workspace, deploy.sha, run.baseEnv);
    log(`==> uploading the source of ${deploy.sha.slice(0, 12)} to Heroku (${tarball.length} bytes)`);
    const source = await api.createSource(app);
    await api.upload(source.putUrl, tarball);
    const started = Date.now();
    let build = await api.createBuild(app, { url: source.getUrl, version: deploy.sha });
    log(`==> Heroku build ${build.id} of ${app}`);
    if (build.outputStreamUrl) await api.streamOutput(build.outputStreamUrl, run.write);
    // The stream ends with the build: look once at once, then at intervals.
    build = await api.build(app, build.id);
    while (build.status === "pending") {
      await sleep(pollMs, undefined, { signal });
      build = await api.build(app, build.id);
    }
    if (build.status !== "succeeded")
      return failed("E_PROVIDER_FAILED", `the Heroku build ${build.id} ${build.status}`);
    log(`==> built in ${formatDuration(Date.now() - started)}`);
    while (build.releaseId === null) {
      // A build that succeeded names its release once Heroku made it.
      await sleep(pollMs, undefined, { signal });
      build = await api.build(app, build.id);
    }
    await run.setPhase("release");
    return await awaitRelease(api, app, await api.release(app, build.releaseId), pollMs, log, signal);
  } catch (error) {
    if (timeout.aborted)
      return {
        status: "failed",
        errorCode: "timeout",
        errorMessage: `Heroku took longer than ${formatDuration(config.timeoutMs)}`,
      };
    if (run.signal.aborted)
      return {
        status: "cancelled",
        errorMessage: "cancelled (a Heroku build already started goes on there)",
      };
    if (error instanceof HerokuApiError) return failed("E_PROVIDER_FAILED", error.message);
    throw error;
  }
}

async function awaitRelease(
  api: HerokuApi,
  app: string,
  first: HerokuRelease,
  pollMs: number,
  log: (line: string) => void,
  signal: AbortSignal,
): Promise<HerokuOutcome> {
  let release = first;
  while (release.status === "pending") {
    await sleep(pollMs, undefined, { signal });
    release = await api.release(app, release.id);
  }
  if (release.status !== "succeeded")
    return failed("E_PROVIDER_FAILED", `the Heroku release v${release.version} ${release.status}`);
  log(`==> Heroku release v${release.version} (${release.id}) is live`);
  return { status: "succeeded", providerRelease: release.id };
}

/** The commit's tree as a .tar.gz, the way `git archive` writes it (argv, no shell; submodules are not included). */
function sourceTarball(workspace: string, sha: string, env: Record<string, string>): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    execFile(
      "git",
      ["archive", "--format=tar.gz", "--end-of-options", sha],
      { cwd: workspace, env, encoding: "buffer", maxBuffer: MAX_TARBALL },
      (error, stdout) =>
        error
          ? reject(new HerokuApiError(`git archive failed: ${error.message}`, 500, null))
          : resolve(stdout),
    );
  });
}

function failed(errorCode: FailureCode, errorMessage: string): HerokuOutcome {
  return { status: "failed", errorCode, errorMessage };
}
