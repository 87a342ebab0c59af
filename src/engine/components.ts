import type { AppConfig, ComponentConfig, EnvironmentConfig } from "../domain/app-config.js";
import type { Components } from "../domain/deploy.js";
import { TurnoutError } from "../domain/errors.js";
import { assertRef, assertRevision } from "../domain/refs.js";
import type { GitMirrors, GitRemote } from "../git/mirrors.js";

/** Where a component's commits come from. */
export function remoteOf(component: ComponentConfig): GitRemote {
  return { url: component.repo, auth: component.auth };
}

export interface ComponentRefs {
  /** Ref of the primary component; default: the environment's branch. */
  primary?: string | undefined;
  /** Refs of other components by name; default: their branches. */
  others?: Record<string, string> | undefined;
}

export interface ResolvedComponents {
  components: Components;
  /** The primary component's ref and commit: what a deploy is "of". */
  ref: string;
  sha: string;
}

/**
 * Resolves every component of an app to a commit: the asked-for refs, else the
 * environment's branches. Every ref is validated before git sees it; with
 * `fetch`, each repository is fetched first (one at a time per mirror, shared
 * by concurrent callers), otherwise the mirrors are read as they are.
 */
export async function resolveComponents(
  git: GitMirrors,
  app: AppConfig,
  environment: EnvironmentConfig,
  refs: ComponentRefs,
  options: { fetch: boolean },
): Promise<ResolvedComponents> {
  const primary = app.components[0]!;
  for (const name of Object.keys(refs.others ?? {})) {
    if (!app.components.some((c) => c.name === name && c !== primary)) {
      throw new TurnoutError("E_VALIDATION", `app '${app.name}' has no other component named '${name}'`, {
        component: name,
      });
    }
  }
  const wanted = app.components.map((component) => {
    const asked = component === primary ? refs.primary : refs.others?.[component.name];
    // What a user asks for may walk back from a ref (main~1); a configured branch is a branch name.
    const ref =
      asked !== undefined
        ? assertRevision(asked)
        : assertRef(environment.branches[component.name] ?? environment.branch);
    return { component, ref };
  });
  const shas = await Promise.all(
    wanted.map(({ component, ref }) =>
      options.fetch ? git.resolve(remoteOf(component), ref) : git.resolveLocal(remoteOf(component), ref),
    ),
  );
  const components: Components = {};
  wanted.forEach(({ component }, i) => {
    components[component.name] = shas[i]!;
  });
  return { components, ref: wanted[0]!.ref, sha: shas[0]! };
}

/** The primary component's commit of a components map (single-repo apps: the only one). */
export function primarySha(app: AppConfig | undefined, components: Components): string | undefined {
  const name = app?.components[0]?.name;
  return (name !== undefined ? components[name] : undefined) ?? Object.values(components)[0];
}
