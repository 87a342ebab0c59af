import type { AppConfig } from "../domain/app-config.js";
import type { CommitSummary, Components } from "../domain/deploy.js";
import type { GitMirrors } from "../git/mirrors.js";
import { remoteOf } from "./components.js";

/**
 * Describes a deploy's commits from the mirrors (one `git log -1` per
 * component; the commits were fetched when the deploy's refs were resolved).
 * Components whose commit the mirror lacks are left out.
 */
export async function describeCommits(
  git: GitMirrors,
  app: AppConfig,
  components: Components,
): Promise<Record<string, CommitSummary>> {
  const described: Record<string, CommitSummary> = {};
  await Promise.all(
    app.components.map(async (component) => {
      const sha = components[component.name];
      if (!sha) return;
      const [commit] = await git.log(remoteOf(component), null, sha, 1).catch(() => []);
      if (commit?.sha === sha) described[component.name] = commit;
    }),
  );
  return described;
}
