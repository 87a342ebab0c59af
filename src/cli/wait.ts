import { setTimeout as sleep } from "node:timers/promises";
import { type ApiClient, ApiError, ConnectionError } from "./api-client.js";
import type { DeployJson } from "./api-types.js";
import { path } from "./context.js";

/**
 * `--wait`: asks for the deploy (`GET /api/v1/deploys/:id`) until it has
 * finished, reading no log. A server that cannot be reached, or answers
 * 408, 429 or 5xx, is asked again with backoff; after `giveUpAfterMs`
 * without an answer the ConnectionError (or ApiError) goes to the caller,
 * as when following.
 */
const FINISHED = new Set(["succeeded", "failed", "cancelled"]);

export interface WaitOptions {
  pollMs?: number;
  giveUpAfterMs?: number;
}

export async function waitForDeploy(
  client: ApiClient,
  deploy: DeployJson,
  options: WaitOptions = {},
): Promise<DeployJson> {
  const pollMs = options.pollMs ?? 1000;
  const giveUpAfter = options.giveUpAfterMs ?? 60_000;
  let current = deploy;
  let lastAnswer = Date.now();
  let delay = 250;
  while (!FINISHED.has(current.status)) {
    try {
      current = (await client.get<{ deploy: DeployJson }>(`/api/v1/deploys/${path(deploy.id)}`)).body.deploy;
      lastAnswer = Date.now();
      delay = 250;
      if (!FINISHED.has(current.status)) await sleep(pollMs);
    } catch (error) {
      const retryable =
        error instanceof ConnectionError ||
        (error instanceof ApiError && (error.status >= 500 || error.status === 429 || error.status === 408));
      if (!retryable || Date.now() - lastAnswer > giveUpAfter) throw error;
      await sleep(delay);
      delay = Math.min(delay * 2, 5000);
    }
  }
  return current;
}
