import type { AppConfig, EnvironmentConfig } from "../domain/app-config.js";
import type { ReadinessReason } from "../domain/dashboard.js";
import type { Components } from "../domain/deploy.js";
import { nextWindowText } from "../domain/deploy-guards.js";
import { describeInstant, windowState } from "../domain/deploy-window.js";
import type { GitMirrors } from "../git/mirrors.js";
import type { Store } from "../store/store.js";
import { remoteOf } from "./components.js";
import { lockedInRange } from "./guards.js";

/**
 * The readiness reasons of deploy windows and commit locks: outside its
 * windows an environment says when the next one opens; a target whose
 * range holds a locked commit names it. Both block a plain deploy; a
 * deployer may force past them (a window with a reason).
 */
export async function guardReasons(input: {
  store: Store;
  git: GitMirrors;
  app: AppConfig;
  environment: EnvironmentConfig;
  /** The primary component's commit asked about; the others are at their branch heads. */
  sha: string;
  now: Date;
}): Promise<ReadinessReason[]> {
  const { app, environment } = input;
  const label = `${app.name}/${environment.name}`;
  const reasons: ReadinessReason[] = [];
  const windows = environment.windows;
  if (windows) {
    const state = windowState(windows, input.now);
    if (!state.open) {
      reasons.push({
        code: "outside_window",
        blocking: true,
        forcible: true,
        message: `${label} is outside its deploy windows; ${nextWindowText(state.opensAt, windows.timezone)}`,
        details: {
          timezone: windows.timezone,
          nextWindowAt: state.opensAt?.toISOString() ?? null,
          ...(state.opensAt ? { nextWindow: describeInstant(state.opensAt, windows.timezone) } : {}),
        },
      });
    }
  }
  const target: Components = {};
  try {
    for (const [i, component] of app.components.entries()) {
      target[component.name] =
        i === 0
          ? input.sha
          : await input.git.resolveLocal(remoteOf(component), environment.branches[component.name]!);
    }
  } catch {
    // Another component's branch cannot be read now: the deploy request itself checks the locks.
    return reasons;
  }
  const current = await input.store.releases.current(app.name, environment.name);
  const locked = await lockedInRange(input, app, current?.components ?? null, target);
  if (locked.length > 0) {
    const first = locked[0]!;
    reasons.push({
      code: "commit_locked",
      blocking: true,
      forcible: true,
      message:
        `this would ship commit ${first.sha.slice(0, 12)}, locked by ${first.lockedBy}: ${first.reason}` +
        (locked.length > 1 ? ` (and ${locked.length - 1} more locked commit(s))` : ""),
      details: { commits: locked.map((l) => ({ sha: l.sha, reason: l.reason, lockedBy: l.lockedBy })) },
    });
  }
  return reasons;
}
