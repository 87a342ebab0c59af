import { type Deploy, parseDeployLabel } from "../domain/deploy.js";
import { TurnoutError } from "../domain/errors.js";
import { authorize, type Permission, type Principal } from "../domain/roles.js";
import type { Store } from "../store/store.js";

/**
 * `/deploys/:id` accepts the numeric id or the label people actually say
 * (`shop/production#42`, URL-encoded), so a CLI can pass through what the user typed.
 */
export async function findDeploy(
  store: Store,
  principal: Principal,
  idOrLabel: string,
  permission: Permission,
): Promise<Deploy> {
  let deploy: Deploy;
  if (/^[0-9]{1,15}$/.test(idOrLabel)) {
    deploy = await store.deploys.get(Number(idOrLabel));
  } else {
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
    deploy = await store.deploys.getByNumber(label.app, label.env, label.number);
  }
  authorize(principal, permission, deploy.app);
  return deploy;
}
