import type { FastifyBaseLogger } from "fastify";
import type { AppConfig } from "../../domain/app-config.js";
import type { HttpDeps } from "../deps.js";

export type WebhookProvider = "github" | "gitlab" | "generic";

export interface VerifiedDelivery {
  provider: WebhookProvider;
  /** The provider's delivery id: the same on a redelivery. */
  id: string;
  event: string;
  apps: AppConfig[];
  /** Extra audit details (pushed ref, new head). */
  details?: Record<string, unknown>;
}

export interface DeliveryOutcome {
  status: 200 | 202;
  body: { duplicate: true } | { accepted: string[]; duplicates?: string[] };
}

/**
 * The store key of a delivery for one app. Deliveries are unique per
 * (provider, delivery id), but one delivery id can reach several apps: one
 * hook for two apps sharing a repository and a secret, or GitLab's event
 * UUID, which every hook of one event shares. Scoping the id by app lets each
 * app act on a delivery exactly once. (App names contain no '/'.)
 */
export function deliveryKey(app: string, deliveryId: string): string {
  return `${app}/${deliveryId}`;
}

/**
 * Acts on a verified delivery: each app that has not seen it yet is poked.
 * Recording comes first and is atomic in the store, so concurrent
 * redeliveries (even across server processes) poke an app once.
 */
export async function deliver(
  { engine, store }: Pick<HttpDeps, "engine" | "store">,
  log: FastifyBaseLogger,
  delivery: VerifiedDelivery,
): Promise<DeliveryOutcome> {
  const accepted: string[] = [];
  const duplicates: string[] = [];
  for (const app of delivery.apps) {
    const first = await store.webhooks.recordDelivery(
      delivery.provider,
      deliveryKey(app.name, delivery.id),
      app.name,
    );
    (first ? accepted : duplicates).push(app.name);
  }
  if (accepted.length === 0) return { status: 200, body: { duplicate: true } };

  for (const app of accepted) poke(engine, app, log);
  for (const app of accepted) {
    try {
      await store.audit.record({
        actor: { name: `webhook:${delivery.provider}`, tokenId: null, role: null, source: "webhook" },
        action: "webhook",
        app,
        env: null,
        details: {
          provider: delivery.provider,
          delivery: delivery.id,
          event: delivery.event,
          apps: accepted,
          ...delivery.details,
        },
      });
    } catch (error) {
      // The fetch is already under way; a lost audit row is not worth a redelivery.
      log.error({ err: error, app }, "webhook: could not record the audit event");
    }
  }
  return {
    status: 202,
    body: duplicates.length > 0 ? { accepted, duplicates } : { accepted },
  };
}

/**
 * Starts the fetch without waiting for it: fetches can take longer than
 * providers wait for an answer (GitHub gives up after 10 s), and a failure is
 * the poller's to retry, not the sender's.
 */
function poke(engine: HttpDeps["engine"], app: string, log: FastifyBaseLogger): void {
  const failed = (error: unknown) => log.warn({ err: error, app }, "webhook: fetch failed");
  try {
    engine.poke(app, "webhook").catch(failed);
  } catch (error) {
    failed(error);
  }
}
