import type { ConfigProblem, ConfigSnapshot } from "../domain/app-config.js";
import { problemApp } from "../domain/app-config.js";
import { hostServes } from "../domain/fleet.js";
import { canSee, type Principal } from "../domain/roles.js";
import type { HostRecord } from "../store/hosts.js";

/**
 * What lists show a token limited to some apps: only what belongs to those
 * apps (see canSee in domain/roles.ts). Unlimited tokens see everything.
 */

/** Configuration problems of the apps the token may see; problems of no app (a misnamed file) only to unlimited tokens. */
export function visibleProblems(principal: Principal, problems: ConfigProblem[]): ConfigProblem[] {
  if (principal.apps === null) return problems;
  return problems.filter((problem) => {
    const app = problemApp(problem);
    return app !== undefined && canSee(principal, app);
  });
}

/**
 * Hosts serving an app the token may see (holding something of it, or
 * targeted by one of its fleet environments), each showing only those apps'
 * inventory. Other hosts are not there for the token.
 */
export function visibleHosts(
  principal: Principal,
  hosts: HostRecord[],
  config: ConfigSnapshot,
): HostRecord[] {
  if (principal.apps === null) return hosts;
  const apps = principal.apps;
  return hosts
    .filter((host) =>
      apps.some((app) =>
        hostServes(
          host,
          app,
          Object.values(config.apps.get(app)?.environments ?? {}).map((e) => e.deploy),
        ),
      ),
    )
    .map((host) => ({ ...host, apps: host.apps.filter((a) => canSee(principal, a.app)) }));
}
