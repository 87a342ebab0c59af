import type { EnvironmentTarget } from "../domain/app-config.js";
import { fleetEvent, type NewNotificationEvent } from "../domain/notification-event.js";
import type { FleetHostState } from "./fleet-ops.js";

type Target = EnvironmentTarget;

export interface DriftWatchDeps {
  hosts(target: Target): Promise<FleetHostState[]>;
  /** Whether the environment's hosts move on purpose now, and why (hostsInMotion). */
  motion(app: string, env: string): Promise<"deploying" | "settling" | null>;
  record(event: NewNotificationEvent): Promise<void>;
  now(): Date;
}

/**
 * Tells when connected hosts of a fleet environment drift from its release
 * (`drift.detected`): checked when hosts report, never while a deploy of the
 * environment is queued or running (its hosts switch one by one then) nor
 * moments after one ended (their reports may lag; the caller checks again). Each
 * host is announced once per drift: the set last seen drifted is remembered
 * per environment, in memory, so after a restart hosts still drifted are
 * announced again (at least once, like every notification). Healing is told
 * by the reconcile deploy that succeeds (`drift.healed`, store/deploys.ts).
 */
export class DriftWatch {
  private readonly seen = new Map<string, Set<string>>();

  constructor(private readonly deps: DriftWatchDeps) {}

  /** True when an environment was passed over because a deploy of it just ended: check again soon. */
  async check(targets: Iterable<Target>): Promise<boolean> {
    let deferred = false;
    for (const target of targets) {
      const { app, environment } = target;
      if (environment.deploy.provider !== "fleet") continue;
      const motion = await this.deps.motion(app.name, environment.name);
      if (motion === "settling") deferred = true;
      if (motion !== null) continue;
      const key = `${app.name}/${environment.name}`;
      const hosts = await this.deps.hosts(target);
      const drifted = new Set(hosts.filter((h) => h.drifted && h.connected).map((h) => h.name));
      const before = this.seen.get(key) ?? new Set<string>();
      this.seen.set(key, drifted);
      const fresh = [...drifted].filter((name) => !before.has(name)).sort();
      if (fresh.length > 0)
        await this.deps.record(
          fleetEvent("drift.detected", app.name, environment.name, fresh, this.deps.now().toISOString()),
        );
    }
    return deferred;
  }
}
