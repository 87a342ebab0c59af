import type { GithubChecks } from "../checks/github-checks.js";
import type { AppConfig, EnvironmentConfig } from "../domain/app-config.js";
import type { DeployReadiness, ReadinessReason } from "../domain/dashboard.js";
import { deployLabel } from "../domain/deploy.js";
import { can, type Principal } from "../domain/roles.js";
import type { GitMirrors } from "../git/mirrors.js";
import type { Store } from "../store/store.js";
import { remoteOf } from "./components.js";
import { guardReasons } from "./readiness-guards.js";

/**
 * Why a deploy of an environment would be refused or held right now, asked
 * before pressing the button. Each reason says whether it blocks (the
 * request would be refused, or the deploy would fail at its gate) or only
 * delays (a queue, pending checks).
 */
export type { DeployReadiness, ReadinessReason } from "../domain/dashboard.js";

export interface ReadinessInput {
  store: Store;
  git: GitMirrors;
  githubChecks: GithubChecks;
  principal: Principal;
  app: AppConfig;
  environment: EnvironmentConfig;
  ref?: string | undefined;
  /** The engine's clock (deploy windows). */
  now?: Date;
}

export async function deployReadiness(input: ReadinessInput): Promise<DeployReadiness> {
  const { store, principal, app, environment } = input;
  const label = `${app.name}/${environment.name}`;
  const reasons: ReadinessReason[] = [];
  const reason = (r: Omit<ReadinessReason, "forcible"> & { forcible?: boolean }) =>
    reasons.push({ forcible: false, ...r });

  if (!can(principal, "deploy", app.name)) {
    reason({
      code: "no_permission",
      blocking: true,
      message: `token '${principal.name}' (${principal.role}) may not deploy ${app.name}`,
    });
  }
  if (environment.promoteFrom) {
    const from = environment.promoteFrom.env;
    reason({
      code: "promotion_required",
      blocking: true,
      message:
        `${label} takes releases promoted from ${from} (turnout promote ${app.name} --from ${from} --to ${environment.name}); ` +
        "a direct deploy needs an admin and a reason",
      details: { promoteFrom: from, minLiveMs: environment.promoteFrom.minLiveMs },
    });
  }
  const [lock, active, queued] = await Promise.all([
    store.locks.get(app.name, environment.name),
    store.deploys.active(app.name, environment.name),
    store.deploys.queued(app.name, environment.name),
  ]);
  if (lock) {
    reason({
      code: "locked",
      blocking: true,
      forcible: true,
      message: `${label} is locked by ${lock.lockedBy}: ${lock.reason}`,
      details: { lockedBy: lock.lockedBy, reason: lock.reason, lockedAt: lock.createdAt },
    });
  }
  if (active) {
    reason({
      code: "deploying",
      blocking: false,
      message: `${deployLabel(active)} is ${active.status}${active.phase ? ` (${active.phase})` : ""}: a new deploy waits for it`,
      details: { deploy: deployLabel(active), id: active.id },
    });
  }
  if (queued.length > 0) {
    reason({
      code: "queued",
      blocking: false,
      message: `${queued.length} deploy${queued.length === 1 ? " is" : "s are"} queued before it`,
      details: { queued: queued.map((d) => deployLabel(d)) },
    });
  }

  const ref = input.ref ?? environment.branch;
  const primary = app.components[0]!;
  // The mirror as it is: asking must not wait for a fetch (the poller keeps it fresh).
  const sha = await input.git.resolveLocal(remoteOf(primary), ref);
  const checks = environment.checks;
  if (checks && checks.required.length > 0 && app.github) {
    try {
      const report = await input.githubChecks.report(app.github, sha, checks.required);
      const failing = report.checks.filter((c) => c.state === "failure").map((c) => c.name);
      if (report.state === "failure") {
        reason({
          code: "checks_failing",
          blocking: true,
          message: `required checks fail on ${sha.slice(0, 12)}: ${failing.join(", ") || "see CI"}`,
          details: { sha, failing },
        });
      } else if (report.state === "pending") {
        reason({
          code: "checks_pending",
          blocking: false,
          message: `required checks are not done on ${sha.slice(0, 12)}: the deploy will wait for them`,
          details: { sha, missing: report.missing },
        });
      }
    } catch (error) {
      reason({
        code: "checks_unknown",
        blocking: false,
        message: `the checks of ${sha.slice(0, 12)} could not be read now (${(error as Error).message}); the deploy's gate will look again`,
      });
    }
  }
  reasons.push(...(await guardReasons({ ...input, sha, now: input.now ?? new Date() })));
  if (checks?.command) {
    reason({
      code: "check_command",
      blocking: false,
      message: "a check command runs before the deploy and may hold or fail it",
    });
  }
  return { ready: !reasons.some((r) => r.blocking), ref, sha, reasons };
}
