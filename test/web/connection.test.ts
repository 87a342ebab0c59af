import type { Browser } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RunningServer, startServer } from "../../src/server/start-server.js";
import { startTurnout, type TestTurnout } from "../helpers/turnout.js";
import { launchBrowser, openPage, poll, textOf } from "./browser.js";

/**
 * A lost connection is shown and recovered from by itself: the server
 * stops, the banner appears; it comes back on the same address, the banner
 * goes and the page shows what changed meanwhile, without a reload.
 */
let browser: Browser;
let t: TestTurnout;
let restarted: RunningServer | undefined;

beforeAll(async () => {
  [browser, t] = await Promise.all([launchBrowser(), startTurnout()]);
});

afterAll(async () => {
  await browser?.close();
  await restarted?.close();
  await t?.stop();
});

describe("the connection banner", () => {
  it("appears when the server stops and goes when it is back, and the page catches up", async () => {
    const { page, context, problems } = await openPage(browser, { token: t.adminToken });
    await page.goto(`${t.url}/#/`);
    await poll(() => page.locator('[data-env="shop/staging"]').count(), { timeout: 15_000 }).toBe(1);
    expect(await page.getByTestId("connection-banner").count()).toBe(0);

    await t.server.close();
    await poll(() => page.getByTestId("connection-banner").count(), { timeout: 15_000 }).toBe(1);
    expect(await textOf(page, '[data-testid="connection-banner"]')).toContain(
      "Connection to the server lost",
    );
    // What was on screen stays on screen.
    expect(await page.locator('[data-env="shop/staging"]').count()).toBe(1);

    restarted = await startServer(
      { ...t.settings, port: t.server.port },
      { print: () => undefined, polling: false },
    );
    // Something happened while the page was not listening.
    const token = t.adminToken;
    const queued = await fetch(`${restarted.url}/api/v1/apps/shop/environments/staging/deploys`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: "{}",
    });
    expect(queued.status).toBe(202);
    const { deploy } = (await queued.json()) as { deploy: { id: number } };
    await expect
      .poll(async () => (await restarted!.store.deploys.get(deploy.id)).status, { timeout: 30_000 })
      .toBe("succeeded");
    await poll(() => page.getByTestId("connection-banner").count(), { timeout: 30_000 }).toBe(0);
    const sha = (await restarted.store.deploys.get(deploy.id)).sha;
    await expect
      .poll(() => textOf(page, '[data-env="shop/staging"]'), { timeout: 20_000 })
      .toContain(sha.slice(0, 7));
    expect(problems).toEqual([]);
    await context.close();
  });
});
