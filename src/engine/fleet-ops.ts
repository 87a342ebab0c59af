import type { EnvironmentTarget } from "../domain/app-config.js";
import { hostReleaseId } from "../domain/artifact.js";
import { auditActor } from "../domain/audit.js";
import { type Deploy, deployLabel } from "../domain/deploy.js";
import { TurnoutError } from "../domain/errors.js";
import { inFleet, inventoryOf } from "../domain/fleet.js";
import { checkLock } from "../domain/lock.js";
import { assertName } from "../domain/names.js";
import type { Release } from "../domain/release.js";
import { authorize, type Principal } from "../domain/roles.js";
import type { Store } from "../store/store.js";
import { releaseDeploy } from "./release-deploy.js";

/**
 * The fleet side of the engine: which hosts an environment targets and
 * whether they drifted, reconciling them, promoting a slot, answering
 * approvals, and rolling back what an interrupted deploy switched.
 */
export interface FleetHostState {
  name: string;
  kind: "agent" | "ssh";
  connected: boolean;
  poolState: string;
  lastSeenAt: string | null;
  /** The release the host runs for this app (agents: as reported; SSH: as read at the last deploy, else as last switched). */
  current: string | null;
  /** The environment's release, as hosts name it. */
  desired: string | null;
  drifted: boolean;
  /** The environment's deploy path, or null for <root>/<app>: which of the host's layouts of the app `current` is. */
  path: string | null;
}

type Target = EnvironmentTarget;

export class FleetOps {
  constructor(
    private readonly store: Store,
    private readonly announce: (deploy: Deploy) => void,
  ) {}

  async hosts(target: Target): Promise<FleetHostState[]> {
    const config = fleetConfig(target);
    const release = await this.store.releases.current(target.app.name, target.environment.name);
    const desired = release?.artifact ? hostReleaseId(release.artifact) : null;
    const recorded = new Map(
      (await this.store.fleet.targets(target.app.name, target.environment.name)).map((t) => [t.hostId, t]),
    );
    const all = await this.store.hosts.list();
    const depooled = await this.store.fleet.depooled(target.app.name);
    const mine = all.filter((h) => inFleet(h, target.app.name, config));
    return mine.map((h) => {
      // Agents report what they hold; SSH hosts were read when the server last talked to
      // them (lastSeenAt), else only what Turnout switched them to is known.
      const reported = h.kind === "agent" || h.lastSeenAt !== null;
      const current = reported
        ? (inventoryOf(h.apps, target.app.name, config.path)?.current ?? null)
        : (recorded.get(h.id)?.actualRelease ?? null);
      return {
        name: h.name,
        kind: h.kind,
        connected: h.connected,
        // This app's pool: a host depooled by another app's deploy still serves this one.
        poolState: depooled.has(h.id) ? "depooled" : "pooled",
        lastSeenAt: h.lastSeenAt,
        current,
        desired,
        drifted: desired !== null && current !== desired,
        path: config.path ?? null,
      };
    });
  }

  /** Brings drifted hosts to the environment's release: a deploy of that release that leaves hosts already on it alone. */
  async reconcile(principal: Principal, target: Target, trigger: "reconcile" = "reconcile"): Promise<Deploy> {
    authorize(principal, "deploy", target.app.name);
    fleetConfig(target);
    const release = await this.currentWithArtifact(target);
    return this.enqueueRelease(principal, target, release, { trigger, slot: null });
  }

  /** Makes `current` point where `slot` points on every host: a `promote` deploy of the slot's release. */
  async switchSlot(principal: Principal, target: Target, slot: string): Promise<Deploy> {
    authorize(principal, "deploy", target.app.name);
    assertName("slot", slot);
    fleetConfig(target);
    const release = await this.store.releases.latestForSlot(target.app.name, target.environment.name, slot);
    if (!release?.artifact) {
      throw new TurnoutError(
        "E_NO_RELEASE",
        `nothing was deployed to slot '${slot}' of ${target.app.name}/${target.environment.name}`,
      );
    }
    return this.enqueueRelease(principal, target, release, { trigger: "promote", slot });
  }

  async answer(principal: Principal, deployId: number, answer: "approved" | "aborted"): Promise<Deploy> {
    const deploy = await this.store.deploys.get(deployId);
    authorize(principal, "deploy", deploy.app);
    await this.store.fleet.answerApproval(deployId, answer, principal.name);
    await this.store.audit.record({
      actor: auditActor(principal),
      action: answer === "approved" ? "deploy.approve" : "deploy.abort",
      app: deploy.app,
      env: deploy.env,
      target: deployLabel(deploy),
      details: { deploy: deploy.id },
    });
    return this.store.deploys.get(deployId);
  }

  /**
   * After a fleet deploy was interrupted part-way, "roll back" means: put the
   * hosts it switched back on the environment's release (still the one before
   * it). Undefined when the newest deploy switched nothing.
   */
  async interruptedRepairTarget(target: Target): Promise<Release | undefined> {
    if (target.environment.deploy.provider !== "fleet") return undefined;
    const [latest] = await this.store.deploys.list({
      app: target.app.name,
      env: target.environment.name,
      limit: 1,
    });
    if (latest?.status !== "failed") return undefined;
    const switched = (await this.store.fleet.deployHosts(latest.id)).some((h) => h.switched);
    if (!switched) return undefined;
    return (await this.store.releases.current(target.app.name, target.environment.name)) ?? undefined;
  }

  private async currentWithArtifact(target: Target): Promise<Release> {
    const release = await this.store.releases.current(target.app.name, target.environment.name);
    if (!release?.artifact) {
      throw new TurnoutError(
        "E_NO_RELEASE",
        `${target.app.name}/${target.environment.name} has no fleet release yet`,
      );
    }
    return release;
  }

  private async enqueueRelease(
    principal: Principal,
    target: Target,
    release: Release,
    options: { trigger: "reconcile" | "promote"; slot: string | null },
  ): Promise<Deploy> {
    const deploy = await this.store.deploys.create(
      {
        ...releaseDeploy(target, release, principal),
        trigger: options.trigger,
        force: false,
        slot: options.slot,
      },
      (lock) => {
        const { ignoredSafeties } = checkLock(lock, principal, false);
        return { ignoredSafeties: [...ignoredSafeties, ...(target.environment.checks ? ["checks"] : [])] };
      },
    );
    this.announce(deploy);
    return deploy;
  }
}

function fleetConfig(target: Target) {
  const deploy = target.environment.deploy;
  if (deploy.provider !== "fleet") {
    throw new TurnoutError(
      "E_VALIDATION",
      `${target.app.name}/${target.environment.name} does not deploy to a fleet`,
    );
  }
  return deploy;
}
