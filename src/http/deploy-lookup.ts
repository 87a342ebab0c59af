import { type Deploy, parseDeployLabel } from "../domain/deploy.js";
import { TurnoutError } from "../domain/errors.js";
import type { Permission, Principal } from "../domain/roles.js";
import type { EngineApi } from "../engine/api.js";

/**
 * `/deploys/:id` accepts the numeric id or the label people actually say
 * (`shop/production#42`, URL-encoded), so a CLI can pass through what the
 * user typed. The engine answers a deploy of an app the caller may not see
 * exactly as one that does not exist.
 */
export async function findDeploy(
  engine: EngineApi,
  principal: Principal,
  idOrLabel: string,
  permission: Permission,
): Promise<Deploy> {
  if (/^[0-9]{1,15}$/.test(idOrLabel)) return engine.findDeploy(principal, Number(idOrLabel), permission);
  const label = parseDeployLabel(idOrLabel);
  if (!label) {
    throw new TurnoutError(
      "E_VALIDATION",
      `invalid deploy ${JSON.stringify(idOrLabel)}: use an id or app/env#n`,
      {
        value: idOrLabel,
      },
    );
  }
  return engine.findDeploy(principal, label, permission);
}
