import type { AppConfig, EnvironmentConfig } from "../domain/app-config.js";
import { assertEmergency, assertEmergencyAllowed, type Emergency } from "../domain/emergency.js";
import { TurnoutError } from "../domain/errors.js";
import type { Principal } from "../domain/roles.js";

export interface EmergencyRequest {
  base?: string | null | undefined;
  files?: string[] | undefined;
  reason?: string | undefined;
}

/**
 * Admits the emergency part of a deploy request, before anything is fetched
 * or stored: the environment and the caller's role must permit it, the tree
 * comes as an uploaded artifact, and only fleets install uploaded artifacts
 * (a shell provider runs commands in a checkout of a commit; there is no
 * commit holding the tree). Returns the record to keep and the ref to deploy
 * under (the base commit, when the tree had one).
 */
export function admitEmergency(
  principal: Principal,
  app: AppConfig,
  environment: EnvironmentConfig,
  request: { emergency: EmergencyRequest; artifact?: string | undefined; ref?: string | undefined },
): { emergency: Emergency; ref: string | undefined } {
  const target = `${app.name}/${environment.name}`;
  assertEmergencyAllowed(environment.allowEmergency ?? false, principal, target);
  if (environment.deploy.provider !== "fleet") {
    throw new TurnoutError(
      "E_PROVIDER_UNSUPPORTED",
      `${target} uses the ${environment.deploy.provider} provider: only fleet environments install an uploaded tree`,
      { provider: environment.deploy.provider },
    );
  }
  if (request.artifact === undefined) {
    throw new TurnoutError(
      "E_VALIDATION",
      "an emergency deploy installs an uploaded artifact: give its digest",
      {
        field: "artifact",
      },
    );
  }
  const emergency = assertEmergency(request.emergency);
  if (request.ref !== undefined && emergency.base !== null && request.ref !== emergency.base) {
    throw new TurnoutError("E_VALIDATION", "give the base commit or a ref, not two different ones", {
      field: "ref",
    });
  }
  return { emergency, ref: request.ref ?? emergency.base ?? undefined };
}
