import type { AppConfig, EnvironmentConfig } from "./app-config.js";
import { buildInputsOf, buildKey } from "./build-key.js";
import type { Deploy } from "./deploy.js";
import { formatDuration } from "./duration.js";
import { TurnoutError } from "./errors.js";
import type { FleetDeployConfig } from "./fleet.js";
import { placeholderValues, substitute } from "./placeholders.js";
import type { Release } from "./release.js";
import type { Principal } from "./roles.js";

/**
 * Promotion: an environment receives exactly the release another one runs
 * (the same commits; the same artifact where the build does not depend on
 * the environment). An environment may require it (`promote_from`): then it
 * takes only releases that succeeded in that environment (and stayed live
 * there `min_live`), and anything else needs an admin with a reason.
 */
export type { PromoteFromConfig } from "./app-config.js";
export type { PromotedFrom } from "./deploy.js";

/**
 * Whether a direct deploy (not a promotion, not a rollback) may enter an
 * environment: one that requires promotion takes it only from an admin who
 * says why. Returns the safety it ignored, recorded on the deploy.
 */
export function checkDirectDeploy(
  app: string,
  environment: EnvironmentConfig,
  principal: Principal,
  reason: string | undefined,
): { ignoredSafeties: string[] } {
  const rule = environment.promoteFrom;
  if (!rule) return { ignoredSafeties: [] };
  const given = reason?.trim() ?? "";
  if (principal.role === "admin" && given !== "") return { ignoredSafeties: ["promotion"] };
  throw new TurnoutError(
    "E_PROMOTION_REQUIRED",
    `${app}/${environment.name} takes releases promoted from ${rule.env} ` +
      `(turnout promote ${app} --from ${rule.env} --to ${environment.name}); ` +
      (principal.role === "admin"
        ? "a direct deploy needs a reason (--reason)"
        : "a direct deploy needs an admin and a reason"),
    { app, env: environment.name, promoteFrom: rule.env },
  );
}

/**
 * Whether `source` (the release live in `from`) may be promoted into
 * `target`: a required source environment must be the one named, and the
 * release must have been live there long enough.
 */
export function checkPromotionSource(
  app: string,
  from: string,
  target: EnvironmentConfig,
  source: Pick<Release, "createdAt" | "deployNumber">,
  now: number,
): void {
  if (from === target.name) {
    throw new TurnoutError("E_VALIDATION", "promote from another environment, not the target itself", {
      app,
      env: target.name,
    });
  }
  const rule = target.promoteFrom;
  if (!rule) return;
  if (rule.env !== from) {
    throw new TurnoutError(
      "E_PROMOTION_REQUIRED",
      `${app}/${target.name} takes releases promoted from ${rule.env}, not from ${from}`,
      { app, env: target.name, promoteFrom: rule.env, from },
    );
  }
  const liveMs = now - Date.parse(source.createdAt);
  if (liveMs < rule.minLiveMs) {
    throw new TurnoutError(
      "E_PROMOTION_TOO_EARLY",
      `${app}/${from}#${source.deployNumber} has been live for ${formatDuration(Math.max(0, liveMs))}; ` +
        `${app}/${target.name} takes releases live in ${from} for at least ${formatDuration(rule.minLiveMs)}`,
      {
        app,
        env: target.name,
        from,
        liveMs: Math.max(0, liveMs),
        minLiveMs: rule.minLiveMs,
        readyAt: new Date(Date.parse(source.createdAt) + rule.minLiveMs).toISOString(),
      },
    );
  }
}

/**
 * The artifact a promotion may take over unchanged: the source release's,
 * when both are fleets and the build reads exactly the same inputs in both
 * environments (domain/build-key.ts). Otherwise null: the target builds the
 * same commits with its own settings (and reuses an artifact built before
 * from those inputs, as any deploy does).
 */
export function reusableArtifact(
  app: AppConfig,
  source: Pick<Release, "artifact" | "environmentConfig" | "env" | "components">,
  sourceDeploy: Pick<Deploy, "id" | "params" | "sha" | "ref" | "previousSha">,
  target: EnvironmentConfig,
): string | null {
  if (!source.artifact) return null;
  const sourceConfig = source.environmentConfig as EnvironmentConfig | null;
  if (sourceConfig?.deploy.provider !== "fleet" || target.deploy.provider !== "fleet") return null;
  const keyIn = (env: string, environment: EnvironmentConfig, id: number): string | null => {
    if (environment.deploy.provider !== "fleet") return null;
    // The placeholders as a deploy in `env` would fill them: `{env}` in a build makes it per environment.
    const deploy = {
      ...sourceDeploy,
      id,
      app: app.name,
      env,
      components: source.components,
      previousSha: null,
    } as Deploy;
    return buildKey(buildInputsOf(app, deploy, buildCommandFilled(environment.deploy, deploy)));
  };
  // The promotion's own id is not known yet: 0 stands for "another deploy", so `{deploy}` in a build never matches.
  const before = keyIn(source.env, sourceConfig, sourceDeploy.id);
  const after = keyIn(target.name, target, 0);
  return before !== null && before === after ? source.artifact : null;
}

/** The build command with the deploy's placeholders filled in, as the fleet provider runs it (what the build key reads). */
function buildCommandFilled(config: FleetDeployConfig, deploy: Deploy): FleetDeployConfig {
  if (!config.build?.command) return config;
  return {
    ...config,
    build: { ...config.build, command: substitute(config.build.command, placeholderValues(deploy)) },
  };
}
