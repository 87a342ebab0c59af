// biome-ignore-all lint/suspicious/noExplicitAny: payloads are untyped JSON in these tests
import { afterAll, describe, expect, it } from "vitest";
import { createTestDatabase, type TestDatabase } from "../helpers/databases.js";
import { startWebhookReceiver, type WebhookReceiver } from "../helpers/notify-receivers.js";
import { startTurnout, type TestTurnout } from "../helpers/turnout.js";
import { until } from "../helpers/wait.js";

/**
 * The outbox survives a restart: deliveries that could not go out (the
 * receiver was down) are in the database when the server stops, and the next
 * server sends every one, once, in order per deploy. On both backends.
 */
const SECRET = "restart-secret-0123456789";

for (const backend of ["sqlite", "postgres"] as const) {
  describe(`a server restart with a full outbox (${backend})`, () => {
    let receiver: WebhookReceiver;
    let database: TestDatabase | undefined;
    let t: TestTurnout | undefined;
    afterAll(async () => {
      await t?.stop();
      await receiver?.close();
      await database?.drop();
    });

    it("loses nothing", async () => {
      receiver = await startWebhookReceiver(SECRET);
      receiver.down = true;
      if (backend === "postgres") database = await createTestDatabase("postgres");
      const settingsFile = `
notify:
  retry: { base: 50ms, max: 100ms, attempts: 1000 }
  channels:
    audit: { type: webhook, url: "${receiver.url}", secret_env: HOOK_SECRET }
`;
      const manifest = `repo: "{repo}"
notify:
  - channel: audit
    events: [deploy.*]
environments:
  staging:
    deploy: { provider: shell, command: ["true"], timeout: 1m }
`;
      const options = {
        environment: { HOOK_SECRET: SECRET },
        settingsFile,
        manifest,
        notify: { idleMs: 50, settleMs: 50 },
      };
      const first = await startTurnout({ ...options, ...(database ? { database } : {}) });
      const root = first.dataDir.replace(/\/data$/, "");
      const ids: number[] = [];
      for (let i = 0; i < 4; i++) {
        const res = await first.api("POST", "/api/v1/apps/shop/environments/staging/deploys", {});
        ids.push(res.body.deploy.id);
        await first.waitForDeploy(res.body.deploy.id);
      }
      await until(() => receiver.refusedWhileDown > 0, 20_000);
      const pending = async () =>
        (await first.api("GET", "/api/v1/apps/shop/deliveries?status=pending&limit=200")).body.deliveries;
      await until(async () => (await pending()).length === 12, 20_000);
      expect(receiver.received).toEqual([]);
      // Stops with the receiver still down: twelve deliveries wait in the database.
      await first.server.close();

      receiver.down = false;
      const second = await startTurnout({ ...options, reuse: { root, ...(database ? { database } : {}) } });
      t = second;
      await until(() => receiver.received.length >= 12, 30_000);
      await new Promise((r) => setTimeout(r, 300));
      expect(receiver.received).toHaveLength(12);
      for (const id of ids) {
        expect(receiver.received.filter((p) => p.event.deploy.id === id).map((p) => p.event.kind)).toEqual([
          "deploy.queued",
          "deploy.started",
          "deploy.succeeded",
        ]);
      }
      // Recorded once the round's chains are all answered: a moment after the receiver saw the last.
      await until(
        async () =>
          (await second.api("GET", "/api/v1/apps/shop/deliveries?status=pending")).body.deliveries.length ===
          0,
        10_000,
        "no delivery left pending",
      );
    }, 120_000);
  });
}
