import type { AppConfig } from "../domain/app-config.js";
import { countCommits } from "../git/commit-count.js";
import type { GitMirrors } from "../git/mirrors.js";
import type { Store } from "../store/store.js";
import { remoteOf } from "./components.js";

/** Counted exactly up to this; beyond, the overview says "1000+". */
export const UNDEPLOYED_CAP = 1000;

/**
 * Records, per environment of an app, how many commits its branches have
 * that its release does not (summed over components), and the newest of
 * them. Read from the mirrors as they are: called right after the poller's
 * fetch and after each deploy. Returns the environments whose figure
 * changed.
 */
export async function recordUndeployed(git: GitMirrors, store: Store, app: AppConfig): Promise<string[]> {
  const before = new Map(
    (await store.undeployed.list([app.name])).map((row) => [row.env, `${row.count}/${row.newestSha}`]),
  );
  const changed: string[] = [];
  for (const environment of Object.values(app.environments)) {
    const current = await store.releases.current(app.name, environment.name);
    let count = 0;
    let truncated = false;
    let newestSha: string | null = null;
    try {
      for (const component of app.components) {
        const remote = remoteOf(component);
        const branch = environment.branches[component.name] ?? environment.branch;
        const head = await git.resolveLocal(remote, branch);
        const from = current?.components[component.name] ?? null;
        if (from === head) continue;
        const counted = await countCommits(git, remote, from, head, UNDEPLOYED_CAP);
        count += counted.count;
        truncated ||= counted.truncated;
        if (counted.count > 0) newestSha ??= head;
      }
    } catch {
      // A branch that does not exist (yet) or a mirror not fetched yet: the
      // poller reports fetch trouble; the last figure stays until a look works.
      continue;
    }
    await store.undeployed.save({
      app: app.name,
      env: environment.name,
      baseReleaseId: current?.id ?? null,
      newestSha,
      count,
      truncated,
    });
    if (before.get(environment.name) !== `${count}/${newestSha}`) changed.push(environment.name);
  }
  return changed;
}
