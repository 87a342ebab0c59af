import type { AppConfig } from "../domain/app-config.js";
import type { PreviewRelease, RollbackPreview } from "../domain/dashboard.js";
import type { CommitSummary } from "../domain/deploy.js";
import type { Release } from "../domain/release.js";
import type { GitMirrors } from "../git/mirrors.js";
import type { Store } from "../store/store.js";
import { remoteOf } from "./components.js";

/**
 * What a rollback would do, before anyone confirms it: the release it brings
 * back, the releases it undoes (every release live after that one, newest
 * first) and the commits that leave with them, per component.
 */
export type { PreviewRelease, RollbackPreview } from "../domain/dashboard.js";

const MAX_COMMITS = 100;

export async function previewRollback(deps: {
  store: Store;
  git: GitMirrors;
  app: AppConfig;
  env: string;
  target: Release;
  repair: boolean;
}): Promise<RollbackPreview> {
  const { store, app, env, target } = deps;
  const history = await store.releases.history(app.name, env, 200);
  const describe = async (release: Release): Promise<PreviewRelease> => {
    const deploy = await store.deploys.get(release.deployId);
    const primary = app.components[0]?.name;
    const sha = (primary ? release.components[primary] : undefined) ?? Object.values(release.components)[0]!;
    return {
      releaseId: release.id,
      deployId: release.deployId,
      deployNumber: release.deployNumber,
      sha,
      components: release.components,
      commit: deploy.commits?.[primary ?? ""] ?? deploy.commit,
      user: deploy.user,
      trigger: deploy.trigger,
      createdAt: release.createdAt,
      configRevision: release.configRevision,
    };
  };
  const currentRelease = history[0];
  const undone = deps.repair ? [] : history.filter((r) => r.id > target.id);
  const commits: RollbackPreview["commits"] = [];
  if (currentRelease && !deps.repair) {
    for (const component of app.components) {
      const from = target.components[component.name];
      const to = currentRelease.components[component.name];
      if (!from || !to || from === to) continue;
      const listed = await deps.git
        .log(remoteOf(component), from, to, MAX_COMMITS + 1)
        .catch(() => [] as CommitSummary[]);
      commits.push({
        component: component.name,
        from,
        to,
        commits: listed.slice(0, MAX_COMMITS),
        truncated: listed.length > MAX_COMMITS,
      });
    }
  }
  return {
    repair: deps.repair,
    target: await describe(target),
    current: currentRelease ? await describe(currentRelease) : null,
    undone: await Promise.all(undone.map(describe)),
    commits,
  };
}
