import type { AppConfig, ConfigProblem, ConfigSnapshot } from "../domain/app-config.js";
import type { ManifestResult } from "./manifest-loader.js";

/**
 * One configuration from the manifests read, the same way for a directory
 * and a configuration repository: each app is taken or refused on its own.
 * A valid manifest replaces its app; an invalid one is reported (every
 * problem names its app) and its app keeps the version it had, if it had
 * one, so one broken file never changes or removes any other app, and a
 * typo saved mid-edit does not take its own app away either. Two files for
 * one app (`shop.yaml` and `shop.yml`) are a problem, not a guess.
 */
export interface ManifestOutcome {
  /** The app the file declares (its name without `.yaml`). */
  app: string;
  /** How the file is named in problems: its path, or `path@shortsha` in a repository. */
  label: string;
  result: ManifestResult;
}

export function buildSnapshot(
  previous: ConfigSnapshot,
  revision: string,
  outcomes: readonly ManifestOutcome[],
): ConfigSnapshot {
  const apps = new Map<string, AppConfig>();
  const problems: ConfigProblem[] = [];
  const declaredBy = new Map<string, string>();
  for (const { app, label, result } of outcomes) {
    const first = declaredBy.get(app);
    if (first !== undefined) {
      problems.push({
        app,
        file: label,
        line: null,
        field: "(file name)",
        message: `app '${app}' is already defined by ${first}`,
      });
      continue;
    }
    declaredBy.set(app, label);
    if ("app" in result) {
      apps.set(app, result.app);
      continue;
    }
    problems.push(...result.problems.map((p) => ({ ...p, app })));
    const kept = previous.apps.get(app);
    if (kept) apps.set(app, kept);
  }
  return { revision, apps, problems, loadedAt: new Date().toISOString() };
}
