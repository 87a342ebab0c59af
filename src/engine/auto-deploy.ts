import type { AppConfig, ConfigSnapshot, EnvironmentConfig } from "../domain/app-config.js";
import { appRevision, environmentRevision } from "../domain/app-revision.js";
import { windowState } from "../domain/deploy-window.js";
import { isTurnoutError } from "../domain/errors.js";
import { ensureHostedRepo } from "../git/hosted-repos.js";
import type { GitMirrors } from "../git/mirrors.js";
import type { AutoOutcome, SettingsClaim } from "../store/auto-admission.js";
import type { Store } from "../store/store.js";
import type { PokeSource } from "./api.js";
import { remoteOf, resolveComponents } from "./components.js";
import { autoTarget } from "./guards.js";

/**
 * Brings `auto_deploy` environments to their desired state — the heads of
 * their branches, with the settings decided for them — by asking the store,
 * which decides atomically whether that makes a deploy (rules in
 * domain/auto-deploy-rules.ts). Two ways in:
 *
 * - a **look** (poll, webhook, push, unlock) fetches the app's repositories
 *   first, then reconciles every auto_deploy environment;
 * - a **reconcile** (on start, on a configuration change, periodically)
 *   fetches nothing: it reads the branch heads the mirrors already have, and
 *   first records the settings this server has as the decided ones when it
 *   started or saw them change. It leaves environments never deployed to the
 *   looks, so their first deploy is of freshly fetched commits.
 */
export interface AutoDeployDeps {
  git: GitMirrors;
  store: Store;
  config(): ConfigSnapshot;
  /** A deploy was created or replaced: wake the workers, tell followers. */
  admitted(outcome: AutoOutcome): void;
  report(message: string): void;
  /** The engine's clock (deploy windows, min_interval). */
  now(): Date;
  /**
   * An environment held back by its deploy window or min_interval: look at
   * its app again at `at`, so the deploy happens then without anyone asking.
   */
  wakeAt(app: string, env: string, at: Date): void;
}

/** Why a reconcile (without fetching) runs. */
export type ReconcileReason = "start" | "config" | "periodic";

export async function lookAtApp(
  deps: AutoDeployDeps,
  appName: string,
  source: PokeSource,
): Promise<AutoOutcome[]> {
  const snapshot = deps.config();
  const app = snapshot.apps.get(appName);
  if (!app) return [];
  // A hosted repository exists from the app's first look on, so that the
  // first push has somewhere to go and fetching it is never an error.
  await Promise.all(app.components.filter((c) => c.hosted).map((c) => ensureHostedRepo(c.repo)));
  const fetched = await Promise.allSettled(app.components.map((c) => deps.git.fetch(remoteOf(c))));
  const failed = fetched.find((r) => r.status === "rejected");
  if (failed) {
    // A repository that cannot be fetched (network, credentials, not pushed yet)
    // makes no decision this round; the next poll tries again.
    deps.report(
      `${appName}: fetch (${source}) failed: ${messageOf((failed as PromiseRejectedResult).reason)}`,
    );
    return [];
  }
  const outcomes: AutoOutcome[] = [];
  for (const environment of Object.values(app.environments)) {
    if (!environment.autoDeploy) continue;
    try {
      outcomes.push(
        await admitHeads(deps, snapshot, app, environment, {
          user: `turnout (${source})`,
          trigger: source === "push" ? "push" : source === "webhook" ? "webhook" : "auto",
        }),
      );
    } catch (error) {
      deps.report(`${app.name}/${environment.name}: auto-deploy check failed: ${messageOf(error)}`);
    }
  }
  return outcomes;
}

/**
 * The reconcile step of the given apps (default: all), or of some of their
 * environments. Errors are reported per environment, through `report` with
 * the environment as key (the caller decides what repeats are worth saying).
 */
export async function reconcile(
  deps: AutoDeployDeps & { reportFor(key: string, message: string | undefined): void },
  reason: ReconcileReason,
  only?: Map<string, Set<string>>,
): Promise<AutoOutcome[]> {
  const snapshot = deps.config();
  const claim: SettingsClaim | undefined =
    reason === "start" ? "started" : reason === "config" ? "changed" : undefined;
  const outcomes: AutoOutcome[] = [];
  for (const app of snapshot.apps.values()) {
    const envs = only ? only.get(app.name) : undefined;
    if (only && !envs) continue;
    for (const environment of Object.values(app.environments)) {
      if (!environment.autoDeploy || (envs && !envs.has(environment.name))) continue;
      const key = `${app.name}/${environment.name}`;
      try {
        if (claim) {
          await deps.store.autoDeploys.decide(
            app.name,
            environment.name,
            appRevision(app, environment),
            claim,
          );
        }
        const state = await deps.store.releases.environment(app.name, environment.name);
        if (state.currentReleaseId !== null) {
          outcomes.push(
            await admitHeads(deps, snapshot, app, environment, {
              user: "turnout (reconcile)",
              trigger: "auto",
            }),
          );
        }
        deps.reportFor(key, undefined);
      } catch (error) {
        deps.reportFor(key, `${key}: auto-deploy reconcile failed: ${messageOf(error)}`);
      }
    }
  }
  return outcomes;
}

/**
 * The environments of auto_deploy whose settings a new configuration changed
 * (or that it adds, or turns auto_deploy on for), by app.
 */
export function changedEnvironments(
  previous: ConfigSnapshot,
  next: ConfigSnapshot,
): Map<string, Set<string>> {
  const changed = new Map<string, Set<string>>();
  for (const app of next.apps.values()) {
    const before = previous.apps.get(app.name);
    for (const environment of Object.values(app.environments)) {
      if (!environment.autoDeploy) continue;
      const was = before?.environments[environment.name];
      if (was?.autoDeploy && environmentRevision(before!, environment.name) === appRevision(app, environment))
        continue;
      if (!changed.has(app.name)) changed.set(app.name, new Set());
      changed.get(app.name)!.add(environment.name);
    }
  }
  return changed;
}

async function admitHeads(
  deps: AutoDeployDeps,
  snapshot: ConfigSnapshot,
  app: AppConfig,
  environment: EnvironmentConfig,
  by: { user: string; trigger: "auto" | "webhook" | "push" },
): Promise<AutoOutcome> {
  const now = deps.now();
  // Outside its windows an environment gets no automatic deploy: it is made when the next one opens.
  if (environment.windows) {
    const state = windowState(environment.windows, now);
    if (!state.open) {
      if (!state.opensAt) return { outcome: "skipped", why: "window" };
      deps.wakeAt(app.name, environment.name, state.opensAt);
      return { outcome: "skipped", why: "window", until: state.opensAt.toISOString() };
    }
  }
  // The mirrors as they are: a look has just fetched them, a reconcile uses what the last look saw.
  const resolved = await resolveComponents(deps.git, app, environment, {}, { fetch: false });
  // Stop before locked commits, and after max_commits_per_deploy: the rest follows in the next deploy.
  const target = await autoTarget(deps, app, environment, resolved.components);
  if (target.components === null) return { outcome: "skipped", why: "commit-locked" };
  const primary = app.components[0]!.name;
  const outcome = await deps.store.autoDeploys.admit({
    app: app.name,
    env: environment.name,
    user: by.user,
    trigger: by.trigger,
    ref: resolved.ref,
    sha: target.components[primary] ?? resolved.sha,
    primary,
    components: target.components,
    heads: resolved.components,
    configRevision: snapshot.revision,
    appRevision: appRevision(app, environment),
    minIntervalMs: environment.minIntervalMs,
    now: now.toISOString(),
  });
  if (outcome.outcome !== "skipped") deps.admitted(outcome);
  if (outcome.outcome === "skipped" && outcome.why === "interval" && outcome.until) {
    deps.wakeAt(app.name, environment.name, new Date(outcome.until));
  }
  if (outcome.outcome === "skipped" && outcome.why === "current" && target.heldBy.commitLocks.length > 0) {
    return { outcome: "skipped", why: "commit-locked" };
  }
  return outcome;
}

function messageOf(error: unknown): string {
  return isTurnoutError(error) || error instanceof Error ? error.message : String(error);
}
