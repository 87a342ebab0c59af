import type { AppConfig, ComponentConfig } from "../../domain/app-config.js";
import { auditActor } from "../../domain/audit.js";
import type { Principal } from "../../domain/roles.js";
import type { EngineApi } from "../../engine/api.js";
import { readRefs } from "../../git/hosted-repos.js";
import type { Store } from "../../store/store.js";
import type { PushCommand } from "./push-commands.js";

/**
 * What a finished push sets in motion: the audit trail learns who moved which
 * refs, and the engine is poked when a branch some environment tracks moved.
 * The push already succeeded for the client; nothing here may fail it.
 */
export interface PushContext {
  app: AppConfig;
  component: ComponentConfig;
  principal: Principal;
  /** What the client asked for; undefined when the request could not be read. */
  requested: PushCommand[] | undefined;
}

export interface AfterPushDeps {
  engine: EngineApi;
  store: Store;
  log: (message: string, error?: unknown) => void;
}

const ZERO = /^0+$/;

/**
 * Receive-pack answers 200 and exits 0 even when it refused some refs (a
 * non-fast-forward under a lock, a failed fsck): a command only counts if the
 * ref now holds what was asked.
 */
async function appliedCommands(repoPath: string, requested: PushCommand[]): Promise<PushCommand[]> {
  if (requested.length === 0) return [];
  const refs = await readRefs(repoPath);
  return requested.filter((c) => (ZERO.test(c.new) ? !refs.has(c.ref) : refs.get(c.ref) === c.new));
}

/** Environments whose branch of this component is among the updated refs. */
function environmentsTracking(app: AppConfig, component: ComponentConfig, refs: string[]): string[] {
  return Object.values(app.environments)
    .filter((env) => {
      const branch = env.branches[component.name];
      return branch !== undefined && refs.includes(`refs/heads/${branch}`);
    })
    .map((env) => env.name);
}

export async function afterPush(deps: AfterPushDeps, push: PushContext): Promise<void> {
  const { app, component, principal } = push;
  let applied: PushCommand[] | undefined;
  try {
    applied = push.requested ? await appliedCommands(component.repo, push.requested) : undefined;
  } catch (error) {
    deps.log(`push to ${app.name}: could not read the refs of ${component.repo}`, error);
  }
  if (applied?.length === 0) return;

  // Unknown updates (a request we could not read) may have moved a tracked
  // branch: a poke too many is cheap, a missed deploy is not.
  const moved = applied?.filter((c) => !ZERO.test(c.new)).map((c) => c.ref);
  const environments = moved ? environmentsTracking(app, component, moved) : null;
  const poke = environments === null || environments.length > 0;

  try {
    await deps.store.audit.record({
      // A push announces new code, as a webhook does: both count as source "webhook".
      actor: auditActor({ ...principal, source: "webhook" }),
      action: "push",
      app: app.name,
      env: null,
      details: {
        component: component.name,
        refs: applied ? applied.map((c) => ({ ref: c.ref, old: c.old, new: c.new })) : null,
        environments,
        poked: poke,
      },
    });
  } catch (error) {
    deps.log(`push to ${app.name}: could not record the audit event`, error);
  }

  if (poke) {
    // Not awaited: fetching and enqueueing is the engine's business and must not hold the request.
    deps.engine.poke(app.name, "push").catch((error: unknown) => {
      deps.log(`push to ${app.name}: poking the engine failed`, error);
    });
  }
}
