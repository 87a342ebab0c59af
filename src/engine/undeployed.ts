import type { AppConfig } from "../domain/app-config.js";
import { countCommits } from "../git/commit-count.js";
import type { GitMirrors, GitRemote } from "../git/mirrors.js";
import type { Store } from "../store/store.js";
import { remoteOf } from "./components.js";

/** Counted exactly up to this; beyond, the overview says "1000+". */
export const UNDEPLOYED_CAP = 1000;

/**
 * What each environment's last count was made from (its release and its
 * branches' heads), per app and environment: a count from the same inputs
 * would give the same figure, so it is neither made nor written again. Most
 * looks fetch nothing new, and each count is a `git rev-list` process.
 * In memory: a server that starts counts once more.
 */
export type UndeployedInputs = Map<string, string>;

/**
 * Records, per environment of an app, how many commits its branches have
 * that its release does not (summed over components), and the newest of
 * them. Read from the mirrors as they are: called right after the poller's
 * fetch and after each deploy. Returns the environments whose figure
 * changed.
 */
export async function recordUndeployed(
  git: GitMirrors,
  store: Store,
  app: AppConfig,
  counted: UndeployedInputs = new Map(),
): Promise<string[]> {
  const before = new Map(
    (await store.undeployed.list([app.name])).map((row) => [row.env, `${row.count}/${row.newestSha}`]),
  );
  const changed: string[] = [];
  for (const environment of Object.values(app.environments)) {
    const current = await store.releases.current(app.name, environment.name);
    let count = 0;
    let truncated = false;
    let newestSha: string | null = null;
    const key = `${app.name}/${environment.name}`;
    let inputs: string;
    try {
      const heads: { remote: GitRemote; from: string | null; head: string }[] = [];
      for (const component of app.components) {
        const remote = remoteOf(component);
        const branch = environment.branches[component.name] ?? environment.branch;
        const head = await git.resolveLocal(remote, branch);
        heads.push({ remote, from: current?.components[component.name] ?? null, head });
      }
      inputs = JSON.stringify([current?.id ?? null, heads.map((h) => [h.remote.url, h.from, h.head])]);
      // The same release and heads as the figure in the store: nothing to count or write.
      if (counted.get(key) === inputs && before.has(environment.name)) continue;
      for (const { remote, from, head } of heads) {
        if (from === head) continue;
        const commits = await countCommits(git, remote, from, head, UNDEPLOYED_CAP);
        count += commits.count;
        truncated ||= commits.truncated;
        if (commits.count > 0) newestSha ??= head;
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
    counted.set(key, inputs);
    if (before.get(environment.name) !== `${count}/${newestSha}`) changed.push(environment.name);
  }
  return changed;
}
