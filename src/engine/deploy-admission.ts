import type { EnvironmentConfig, EnvironmentTarget } from "../domain/app-config.js";
import { appRevision } from "../domain/app-revision.js";
import { isSha256 } from "../domain/artifact.js";
import { auditActor } from "../domain/audit.js";
import { type Deploy, deployLabel, type Trigger } from "../domain/deploy.js";
import { type CommitLock, checkCommitLocks, checkWindow } from "../domain/deploy-guards.js";
import { notFound, TurnoutError } from "../domain/errors.js";
import { checkLock } from "../domain/lock.js";
import { assertName, assertParams } from "../domain/names.js";
import { checkDirectDeploy } from "../domain/promotion.js";
import type { Release } from "../domain/release.js";
import type { Principal } from "../domain/roles.js";
import type { GitMirrors } from "../git/mirrors.js";
import type { ArtifactSource } from "../providers/fleet/fleet-provider.js";
import type { Store } from "../store/store.js";
import type { DeployRequest, RollbackRequest } from "./api.js";
import { resolveComponents } from "./components.js";
import { admitEmergency } from "./emergency.js";
import { lockedInRange } from "./guards.js";
import { releaseDeploy } from "./release-deploy.js";

/**
 * Admission of deploy and rollback requests into the queue, for an
 * environment the caller was already found allowed to deploy: params,
 * slots, uploaded artifacts, locks, deploy windows and locked commits
 * checked, refs resolved to commits, and whatever a deployer forced past
 * recorded in the audit log. The engine announces what was queued.
 */
export interface AdmissionDeps {
  store: Store;
  git: GitMirrors;
  /** Fleet artifacts (absent: shell deploys only). */
  artifacts?: ArtifactSource | undefined;
  configRevision(): string;
  /** The clock deploy windows are read by. */
  now(): Date;
  /** After an interrupted fleet deploy: the release its switched hosts go back to. */
  interruptedRepairTarget(target: EnvironmentTarget): Promise<Release | undefined>;
}

export async function admitDeploy(
  deps: AdmissionDeps,
  principal: Principal,
  { app, environment }: EnvironmentTarget,
  request: DeployRequest,
): Promise<Deploy> {
  const params = assertParams(request.params);
  const force = request.force === true;
  // An environment that takes promoted releases only: a direct deploy is an admin's call, with a reason.
  const direct = checkDirectDeploy(app.name, environment, principal, request.reason);
  const reason = request.reason?.trim() || null;
  const urgent = request.emergency
    ? admitEmergency(principal, app, environment, { ...request, emergency: request.emergency })
    : undefined;
  if (request.slot !== undefined || request.artifact !== undefined) {
    if (environment.deploy.provider !== "fleet") {
      throw new TurnoutError("E_VALIDATION", "slots and uploaded artifacts are for fleet environments");
    }
    if (request.slot !== undefined) assertName("slot", request.slot);
    if (request.artifact !== undefined) {
      if (!isSha256(request.artifact))
        throw new TurnoutError("E_VALIDATION", "artifact must be a sha256 digest");
      const known = await deps.store.artifacts.get(request.artifact).catch(() => undefined);
      if (!known || known.app !== app.name) {
        throw new TurnoutError(
          "E_NOT_FOUND",
          `artifact ${request.artifact.slice(0, 12)} was not uploaded for ${app.name}`,
        );
      }
    }
  }
  // Refuse early (before fetching) when locked; the transaction checks again.
  checkLock(await deps.store.locks.get(app.name, environment.name), principal, force);
  const outsideWindow = checkWindow(
    { app: app.name, env: environment.name, windows: environment.windows },
    deps.now(),
    { force, reason: request.reason },
  ).ignoredSafeties;
  const resolved = await resolveComponents(
    deps.git,
    app,
    environment,
    { primary: urgent ? urgent.ref : request.ref, others: request.refs },
    { fetch: true },
  );
  const current = await deps.store.releases.current(app.name, environment.name);
  const lockedCommits = await lockedInRange(
    { git: deps.git, store: deps.store },
    app,
    current?.components ?? null,
    resolved.components,
  );
  const guarded = [
    ...outsideWindow,
    ...checkCommitLocks({ app: app.name, env: environment.name }, lockedCommits, force).ignoredSafeties,
  ];
  // Forcing past a CI gate, like past a lock, is an admin's call.
  const skipsChecks = force && environment.checks !== undefined;
  if (skipsChecks && principal.role !== "admin") {
    throw new TurnoutError(
      "E_FORBIDDEN",
      `only an admin may force a deploy past the checks of ${app.name}/${environment.name}`,
    );
  }
  const create = () =>
    deps.store.deploys.create(
      {
        app: app.name,
        env: environment.name,
        trigger: request.trigger,
        user: principal.name,
        actor: auditActor(principal),
        ref: resolved.ref,
        sha: resolved.sha,
        components: resolved.components,
        params,
        force,
        configRevision: deps.configRevision(),
        appRevision: appRevision(app, environment),
        slot: request.slot ?? null,
        artifact: request.artifact ?? null,
        reason,
        emergency: urgent?.emergency ?? null,
      },
      (lock) => {
        const { ignoredSafeties } = checkLock(lock, principal, force);
        const ignored = [...ignoredSafeties, ...direct.ignoredSafeties, ...guarded];
        return { ignoredSafeties: skipsChecks ? [...ignored, "checks"] : ignored };
      },
    );
  const given = request.artifact;
  const deploy =
    given === undefined
      ? await create()
      : await withArtifact(deps.artifacts, given, create, () =>
          notFound(`artifact ${given.slice(0, 12)} (removed by retention, or lost)`, { artifact: given }),
        );
  if (guarded.length > 0)
    await recordForced(deps.store, principal, deploy, guarded, lockedCommits, request.reason);
  if (urgent) await recordEmergency(deps.store, principal, deploy);
  return deploy;
}

/**
 * Queues a deploy that installs a stored artifact: checked to be there and
 * queued in one section of the artifact store, so the garbage collector
 * either removed it before (refused here) or sees the queued deploy.
 */
export function withArtifact(
  artifacts: ArtifactSource | undefined,
  digest: string,
  create: () => Promise<Deploy>,
  gone: () => Error,
): Promise<Deploy> {
  if (!artifacts) return create();
  return artifacts.hold(async () => {
    if (!(await artifacts.hasBlob(digest))) throw gone();
    return create();
  });
}

export async function admitRollback(
  deps: AdmissionDeps,
  principal: Principal,
  { app, environment }: EnvironmentTarget,
  request: RollbackRequest,
): Promise<Deploy> {
  // After an interrupted fleet deploy, "roll back" puts the hosts it switched
  // back on the environment's release; otherwise it goes to an earlier one.
  const repair =
    request.to === undefined ? await deps.interruptedRepairTarget({ app, environment }) : undefined;
  const release = repair ?? (await rollbackTarget(deps.store, app.name, environment.name, request.to));
  const current = await deps.store.releases.current(app.name, environment.name);
  const force = request.force === true;
  const create = () =>
    deps.store.deploys.create(
      {
        ...releaseDeploy({ app, environment }, release, principal),
        trigger: (request.trigger ?? "rollback") as Trigger,
        force,
        rollbackOf: release.deployNumber,
        rolledBackFrom: repair ? null : (current?.components ?? null),
      },
      (lock) => {
        // A rollback brings back code that already ran here: its checks passed then.
        const { ignoredSafeties } = checkLock(lock, principal, force);
        const gated = (release.environmentConfig as EnvironmentConfig | null)?.checks !== undefined;
        return { ignoredSafeties: gated ? [...ignoredSafeties, "checks"] : ignoredSafeties };
      },
    );
  const artifact = release.artifact;
  const deploy =
    artifact === null
      ? await create()
      : await withArtifact(
          deps.artifacts,
          artifact,
          create,
          () =>
            new TurnoutError(
              "E_NO_RELEASE",
              `the artifact of ${app.name}/${environment.name}#${release.deployNumber} was removed by retention ` +
                "(artifacts of the newest releases of each environment are kept; see retention in docs/operations.md)",
              { app: app.name, env: environment.name, to: release.deployNumber, artifact },
            ),
        );
  return deploy;
}

/** Emergency deploys leave an audit entry: who shipped what unreviewed, and why. */
async function recordEmergency(store: Store, principal: Principal, deploy: Deploy): Promise<void> {
  await store.audit.record({
    actor: auditActor(principal),
    action: "deploy.emergency",
    app: deploy.app,
    env: deploy.env,
    details: {
      deploy: deployLabel(deploy),
      base: deploy.emergency?.base ?? null,
      files: deploy.emergency?.files.length ?? 0,
      reason: deploy.emergency?.reason ?? "",
      artifact: deploy.artifact,
    },
  });
}

/** A deploy forced past a deploy window or a locked commit: who, why and past what, in the audit log. */
async function recordForced(
  store: Store,
  principal: Principal,
  deploy: Deploy,
  ignored: string[],
  commits: CommitLock[],
  reason: string | undefined,
): Promise<void> {
  await store.audit.record({
    actor: auditActor(principal),
    action: "deploy.force",
    app: deploy.app,
    env: deploy.env,
    details: {
      deploy: deployLabel(deploy),
      ignored,
      ...(commits.length > 0 ? { commits: commits.map((c) => c.sha) } : {}),
      ...(reason?.trim() ? { reason: reason.trim() } : {}),
    },
  });
}

/** The release a rollback brings back: deploy `to`'s, or the newest one unlike the current. */
export async function rollbackTarget(
  store: Store,
  app: string,
  env: string,
  to: number | undefined,
): Promise<Release> {
  const { releases } = store;
  if (to !== undefined) {
    const release = await releases.byDeployNumber(app, env, to);
    if (!release) {
      throw new TurnoutError("E_NO_RELEASE", `${app}/${env}#${to} did not produce a release`, {
        app,
        env,
        to,
      });
    }
    return release;
  }
  const history = await releases.history(app, env, 100);
  const current = history[0];
  const previous = current && history.find((r) => r.fingerprint !== current.fingerprint);
  if (!previous) {
    throw new TurnoutError("E_NO_RELEASE", `${app}/${env} has no earlier release to roll back to`, {
      app,
      env,
    });
  }
  return previous;
}
