import type { Kysely } from "kysely";
import type { Capabilities } from "./capabilities.js";
import { nowIso } from "./rows.js";
import type { Schema } from "./schema.js";

/**
 * Webhook deliveries seen. Providers redeliver (on timeouts, or by hand from
 * their UI); the primary key makes "first time we see this delivery" an atomic
 * question, also across server processes.
 */
export class WebhookStore {
  constructor(
    private readonly db: Kysely<Schema>,
    private readonly caps: Capabilities,
  ) {}

  /** True the first time a delivery id is recorded for a provider, false for a redelivery. */
  async recordDelivery(provider: string, deliveryId: string, app: string | null): Promise<boolean> {
    try {
      await this.db
        .insertInto("webhook_deliveries")
        .values({ provider, delivery_id: deliveryId, app, received_at: nowIso() })
        .execute();
      return true;
    } catch (error) {
      if (this.caps.isUniqueViolation(error)) return false;
      throw error;
    }
  }

  /** Forgets deliveries older than `before` (ISO time); providers do not redeliver after days. */
  async prune(before: string): Promise<number> {
    const result = await this.db
      .deleteFrom("webhook_deliveries")
      .where("received_at", "<", before)
      .executeTakeFirst();
    return Number(result.numDeletedRows);
  }
}
