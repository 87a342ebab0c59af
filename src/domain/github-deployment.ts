import { TurnoutError } from "./errors.js";
import { assertName } from "./names.js";
import { isFullSha } from "./refs.js";

/**
 * GitHub's `deployment` event (Heaven's model: chat or CI creates a GitHub
 * deployment, the deployer acts on it). Pure: what of the payload Turnout
 * uses, checked, and how a deploy stays linked to its GitHub deployment.
 */

/**
 * The deploy parameter carrying the GitHub deployment a `deployment` event
 * asked for: the script sees it as TURNOUT_PARAM_GITHUB_DEPLOYMENT_ID, and the
 * github-deployments channel reports on that deployment instead of creating
 * one (only for deploys the webhook started).
 */
export const GITHUB_DEPLOYMENT_PARAM = "GITHUB_DEPLOYMENT_ID";

/** The key in a deployment's payload marking it as created by Turnout (its own events start nothing). */
export const TURNOUT_PAYLOAD_KEY = "turnout";

export interface DeploymentRequest {
  id: number;
  sha: string;
  environment: string;
  /** The GitHub login that created it (for the deploy's user), when it is a plausible login. */
  creator: string | undefined;
  /** True when Turnout itself created it (reporting a deploy): nothing to do. */
  createdByTurnout: boolean;
}

const LOGIN = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})(?:\[bot\])?$/;

export function parseDeploymentEvent(payload: unknown): DeploymentRequest {
  const deployment = field(payload, "deployment");
  const id = field(deployment, "id");
  const sha = field(deployment, "sha");
  const environment = field(deployment, "environment");
  if (typeof id !== "number" || !Number.isSafeInteger(id) || id < 1) {
    throw new TurnoutError("E_BAD_REQUEST", "deployment.id is not a deployment id");
  }
  if (typeof sha !== "string" || !isFullSha(sha)) {
    throw new TurnoutError("E_INVALID_REF", "deployment.sha is not a full commit SHA");
  }
  const login = field(field(deployment, "creator"), "login");
  const inner = field(deployment, "payload");
  return {
    id,
    sha,
    environment: assertName("environment", environment),
    creator: typeof login === "string" && LOGIN.test(login) ? login : undefined,
    createdByTurnout: typeof inner === "object" && inner !== null && TURNOUT_PAYLOAD_KEY in inner,
  };
}

function field(value: unknown, key: string): unknown {
  return typeof value === "object" && value !== null && !Array.isArray(value)
    ? (value as Record<string, unknown>)[key]
    : undefined;
}
