import { setTimeout as wait } from "node:timers/promises";
import type { Deploy } from "../domain/deploy.js";
import { isTurnoutError } from "../domain/errors.js";
import type { Outcome } from "../store/deploys.js";
import type { Store } from "../store/store.js";

/** The first pause between tries, doubled each time up to the last. */
const FIRST_RETRY_MS = 250;
const LONGEST_RETRY_MS = 5000;

/**
 * Records a deploy's end, trying again while the store cannot be reached
 * (PostgreSQL restarting, a connection cut). Without this, a deploy that
 * ended during an outage stayed `running` until the server restarted:
 * recovery leaves a live server's deploys alone. It stops trying when the
 * store answers with a refusal of its own (another server took the deploy
 * over: E_CONFLICT) or when `giveUp` aborts (a shutdown that stopped
 * waiting): then the next start's recovery records the deploy interrupted.
 */
export async function finishWhenStored(
  store: Store,
  deployId: number,
  owner: string,
  outcome: Outcome,
  options: { giveUp: AbortSignal; report(message: string): void },
): Promise<Deploy> {
  for (let pause = FIRST_RETRY_MS; ; pause = Math.min(pause * 2, LONGEST_RETRY_MS)) {
    try {
      return await store.deploys.finish(deployId, owner, outcome);
    } catch (error) {
      if (isTurnoutError(error) || options.giveUp.aborted) throw error;
      options.report(
        `recording the end of deploy ${deployId} failed (${(error as Error).message}); trying again in ${pause} ms`,
      );
      try {
        await wait(pause, undefined, { signal: options.giveUp });
      } catch {
        throw error;
      }
    }
  }
}
