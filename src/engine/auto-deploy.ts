import type { AppConfig, ConfigSnapshot } from "../domain/app-config.js";
import { isTurnoutError } from "../domain/errors.js";
import { ensureHostedRepo } from "../git/hosted-repos.js";
import type { GitMirrors } from "../git/mirrors.js";
import type { AutoOutcome } from "../store/auto-admission.js";
import type { Store } from "../store/store.js";
import type { PokeSource } from "./api.js";
import { remoteOf, resolveComponents } from "./components.js";

/**
 * Turns repository changes into auto-deploys: fetch an app's repositories,
 * resolve each `auto_deploy` environment's branches, and let the store decide
 * atomically whether that makes a deploy (see store/auto-admission.ts for the
 * rules). Also redeploys the same code when a new configuration changes an
 * environment's settings.
 */
export interface AutoDeployDeps {
  git: GitMirrors;
  store: Store;
  config(): ConfigSnapshot;
  /** A deploy was created or replaced: wake the workers, tell followers. */
  admitted(outcome: AutoOutcome): void;
  report(message: string): void;
}

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
      const resolved = await resolveComponents(deps.git, app, environment, {}, { fetch: false });
      const outcome = await deps.store.autoDeploys.admit({
        app: app.name,
        env: environment.name,
        user: `turnout (${source})`,
        ref: resolved.ref,
        sha: resolved.sha,
        components: resolved.components,
        configRevision: snapshot.revision,
        configChanged: false,
        trigger: source === "push" ? "push" : source === "webhook" ? "webhook" : "auto",
      });
      outcomes.push(outcome);
      if (outcome.outcome !== "skipped") deps.admitted(outcome);
    } catch (error) {
      deps.report(`${app.name}/${environment.name}: auto-deploy check failed: ${messageOf(error)}`);
    }
  }
  return outcomes;
}

/**
 * A new configuration: every `auto_deploy` environment whose settings changed
 * gets a deploy of the code it runs now, so the change is deployed and
 * recorded like a code change. Environments never deployed are left to the
 * commit path.
 */
export async function redeployChangedEnvironments(
  deps: AutoDeployDeps,
  previous: ConfigSnapshot,
  next: ConfigSnapshot,
): Promise<AutoOutcome[]> {
  const outcomes: AutoOutcome[] = [];
  for (const app of next.apps.values()) {
    const before = previous.apps.get(app.name);
    for (const environment of Object.values(app.environments)) {
      if (!environment.autoDeploy) continue;
      if (before && !settingsChanged(before, app, environment.name)) continue;
      const current = await deps.store.releases.current(app.name, environment.name);
      if (!current) continue;
      const primary = app.components[0]!.name;
      try {
        const outcome = await deps.store.autoDeploys.admit({
          app: app.name,
          env: environment.name,
          user: "turnout (config)",
          ref: current.components[primary] ?? Object.values(current.components)[0]!,
          sha: current.components[primary] ?? Object.values(current.components)[0]!,
          components: current.components,
          configRevision: next.revision,
          configChanged: true,
        });
        outcomes.push(outcome);
        if (outcome.outcome !== "skipped") deps.admitted(outcome);
      } catch (error) {
        deps.report(`${app.name}/${environment.name}: config redeploy failed: ${messageOf(error)}`);
      }
    }
  }
  return outcomes;
}

/** Whether what a deploy of this environment runs with differs between two versions of the app. */
function settingsChanged(before: AppConfig, after: AppConfig, env: string): boolean {
  const relevant = (app: AppConfig) =>
    JSON.stringify({
      environment: app.environments[env] ?? null,
      components: app.components.map((c) => ({ name: c.name, repo: c.repo })),
      secretEnv: Object.keys(app.secretEnv).sort(),
    });
  return relevant(before) !== relevant(after);
}

function messageOf(error: unknown): string {
  return isTurnoutError(error) || error instanceof Error ? error.message : String(error);
}
