import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { HOST_REPORT_GRACE_MS } from "../../src/engine/hosts-in-motion.js";
import { SELF_HEAL_USER } from "../../src/store/host-history.js";
import { SELF_HEALING_WEB_FLEET } from "../helpers/fleet.js";
import { startTurnout, type TestTurnout } from "../helpers/turnout.js";
import { released } from "./retention-fixtures.js";

/**
 * When self-heal believes a drift: not in the moment after a deploy ended
 * (the hosts' reports of where `current` points may not be stored yet), and
 * a heal it held back for any reason is asked for again (engine.selfHeal
 * returns true), the 10-second pause after starting a heal included. A
 * drifted host here is one whose stored report names no release; the
 * environment's release is recorded straight into the store.
 */
describe("self-heal", () => {
  let t: TestTurnout;
  let offset = 0;

  beforeAll(async () => {
    t = await startTurnout({
      manifest: SELF_HEALING_WEB_FLEET,
      clock: () => new Date(Date.now() + offset),
    });
    await t.store.hosts.enrollAgent({
      name: "web-1",
      labels: { role: "web" },
      owner: "elsewhere:1:agents",
      tokenHash: null,
      grant: { apps: null, labels: null },
    });
  }, 60_000);

  afterAll(async () => {
    await t?.stop();
  });

  const heals = async () =>
    (await t.store.deploys.list({ app: "shop", limit: 10 })).filter((d) => d.user === SELF_HEAL_USER);

  it("waits out the moment after a deploy ends, then heals once and asks to look again", async () => {
    const environmentConfig = t.engine.config().apps.get("shop")!.environments["production"];
    await released(t.store, "d".repeat(64), { app: "shop", env: "production", environmentConfig });
    const hosts = (await t.api("GET", "/api/v1/apps/shop/environments/production/hosts")).body.hosts;
    expect(hosts).toMatchObject([{ name: "web-1", connected: true, current: null, drifted: true }]);

    // The deploy ended just now: web-1's report may be on its way. Held, not healed.
    expect(await t.engine.selfHeal()).toBe(true);
    expect(await heals()).toEqual([]);

    // Past the grace, the drift is believed: one heal.
    offset = HOST_REPORT_GRACE_MS + 1000;
    expect(await t.engine.selfHeal()).toBe(false);
    const [heal] = await heals();
    expect(heal).toMatchObject({ trigger: "reconcile" });

    // No agent holds web-1 and the release has no artifact here, so the heal fails or is
    // stopped (409 when it already ended); web-1 still drifts. Within the pause after a heal
    // starts, no second heal, but the caller is told to look again (a host that joined during
    // the first heal may not have been in it).
    expect([202, 409]).toContain((await t.api("POST", `/api/v1/deploys/${heal!.id}/cancel`)).status);
    expect((await t.waitForDeploy(heal!.id)).status).not.toBe("succeeded");
    offset += HOST_REPORT_GRACE_MS + 1000;
    expect(await t.engine.selfHeal()).toBe(true);
    expect(await heals()).toHaveLength(1);
  });
});
