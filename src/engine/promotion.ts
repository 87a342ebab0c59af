import type { EnvironmentTarget } from "../domain/app-config.js";
import { appRevision } from "../domain/app-revision.js";
import { auditActor } from "../domain/audit.js";
import type { Deploy } from "../domain/deploy.js";
import { TurnoutError } from "../domain/errors.js";
import { checkLock } from "../domain/lock.js";
import { checkPromotionSource, reusableArtifact } from "../domain/promotion.js";
import type { Principal } from "../domain/roles.js";
import type { Store } from "../store/store.js";

/**
 * Queues a promotion: a deploy of `to` that installs exactly the release
 * `from` runs now — its commits and parameters, and its artifact where the
 * build does not depend on the environment (no rebuild). Ordinary in every
 * other way: same queue, lock, gate and history as any deploy.
 */
export interface PromotionRequest {
  app: string;
  from: string;
  to: string;
  /** Only an admin may force a promotion past a lock. */
  force?: boolean | undefined;
  /** `promote` (API, CLI) or `pipeline` (a pipeline's gate passed). */
  trigger?: "promote" | "pipeline";
  reason?: string | undefined;
}

export interface PromotionDeps {
  store: Store;
  configRevision(): string;
  /** Queues `create` while the artifact it names is held against the garbage collector. */
  withArtifact(digest: string, create: () => Promise<Deploy>, gone: () => Error): Promise<Deploy>;
  now?: () => number;
}

export async function queuePromotion(
  deps: PromotionDeps,
  principal: Principal,
  target: EnvironmentTarget,
  request: PromotionRequest,
): Promise<Deploy> {
  const { app, environment } = target;
  const { store } = deps;
  const source = await store.releases.current(app.name, request.from);
  if (!source) {
    throw new TurnoutError("E_NO_RELEASE", `${app.name}/${request.from} has no release to promote`, {
      app: app.name,
      env: request.from,
    });
  }
  checkPromotionSource(app.name, request.from, environment, source, (deps.now ?? Date.now)());
  const force = request.force === true;
  // Refuse early when locked; the transaction checks again.
  checkLock(await store.locks.get(app.name, environment.name), principal, force);
  const sourceDeploy = await store.deploys.get(source.deployId);
  const artifact = reusableArtifact(app, source, sourceDeploy, environment);
  const primary = app.components[0]!.name;
  const sha = source.components[primary] ?? sourceDeploy.sha;
  const reason = request.reason?.trim() || null;
  const create = () =>
    store.deploys.create(
      {
        app: app.name,
        env: environment.name,
        trigger: request.trigger ?? "promote",
        user: principal.name,
        ref: sha,
        sha,
        components: source.components,
        // The same inputs: parameters reach the build and the deploy as they did there.
        params: sourceDeploy.params,
        force,
        configRevision: deps.configRevision(),
        appRevision: appRevision(app, environment),
        artifact,
        promotedFrom: { env: request.from, deployId: sourceDeploy.id, deployNumber: sourceDeploy.number },
        reason,
      },
      (lock) => checkLock(lock, principal, force),
    );
  const deploy =
    artifact === null
      ? await create()
      : await deps.withArtifact(
          artifact,
          create,
          () =>
            new TurnoutError(
              "E_NO_RELEASE",
              `the artifact of ${app.name}/${request.from}#${sourceDeploy.number} was removed by retention`,
              { app: app.name, env: request.from, artifact },
            ),
        );
  await store.audit.record({
    actor: auditActor(principal),
    action: "deploy.promote",
    app: app.name,
    env: environment.name,
    details: {
      deploy: `${app.name}/${environment.name}#${deploy.number}`,
      from: `${app.name}/${request.from}#${sourceDeploy.number}`,
      artifact,
      ...(reason ? { reason } : {}),
    },
  });
  return deploy;
}
