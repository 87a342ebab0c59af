import type { EnvironmentTarget } from "../domain/app-config.js";
import { auditActor } from "../domain/audit.js";
import type { Release } from "../domain/release.js";
import type { Principal } from "../domain/roles.js";
import type { NewDeploy } from "../store/deploys.js";

/**
 * The deploy that brings a recorded release onto its environment again (a
 * rollback, a reconcile, a promotion): the release's own commits, revisions,
 * settings and artifact, asked for by `principal`. The caller adds why
 * (trigger, force, slot, what it rolls back).
 */
export function releaseDeploy(
  { app, environment }: EnvironmentTarget,
  release: Release,
  principal: Principal,
): Omit<NewDeploy, "trigger" | "force"> {
  const primary = app.components[0]!.name;
  const sha = release.components[primary] ?? Object.values(release.components)[0]!;
  return {
    app: app.name,
    env: environment.name,
    user: principal.name,
    actor: auditActor(principal),
    ref: sha,
    sha,
    components: release.components,
    params: {},
    configRevision: release.configRevision,
    appRevision: release.appRevision,
    environmentConfig: release.environmentConfig,
    artifact: release.artifact,
  };
}
