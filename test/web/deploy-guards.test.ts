import type { Browser } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTurnout, type TestTurnout } from "../helpers/turnout.js";
import { launchBrowser, openPage, poll, textOf } from "./browser.js";

/**
 * Deploy windows and commit locks in the browser: the deploy button says
 * when the next window opens and lets a deployer force it with a reason;
 * the pending list marks a locked commit. The server's clock reads a
 * Saturday (production takes deploys on weekdays, 09:00–17:00 in Berlin).
 */
const MANIFEST = `repo: "{repo}"
environments:
  production:
    branch: main
    deploy_windows:
      timezone: Europe/Berlin
      allow:
        - { days: [mon-fri], from: "09:00", to: "17:00" }
    deploy:
      provider: shell
      script: |
        echo "deploying $TURNOUT_SHA"
`;

let browser: Browser;
let t: TestTurnout;
let deployer: string;

beforeAll(async () => {
  const offset = Date.parse("2030-01-12T12:00:00Z") - Date.now();
  [browser, t] = await Promise.all([
    launchBrowser(),
    startTurnout({ manifest: MANIFEST, clock: () => new Date(Date.now() + offset) }),
  ]);
  deployer = (await t.api("POST", "/api/v1/tokens", { name: "dev", role: "deployer" })).body.token;
});

afterAll(async () => {
  await browser?.close();
  await t?.stop();
});

describe("deploy windows and commit locks in the dashboard", () => {
  it("says when the next window opens, and lets a deployer deploy anyway with a reason", async () => {
    const { page, context, problems } = await openPage(browser, { token: deployer });
    await page.goto(`${t.url}/#/apps/shop/production`);
    await expect
      .poll(() => textOf(page, '[data-testid="deploy-reasons"]'), { timeout: 15_000 })
      .toContain(
        "Blocked: shop/production is outside its deploy windows; the next window opens 2030-01-14 09:00 Europe/Berlin (08:00 UTC)",
      );
    expect(await page.locator('[data-action="deploy"]').isDisabled()).toBe(true);
    page.once("dialog", (dialog) => void dialog.accept("customer outage"));
    await page.getByRole("button", { name: /Deploy anyway/ }).click();
    await poll(
      async () => (await t.store.deploys.list({ app: "shop", env: "production", limit: 1 })).length,
    ).toBe(1);
    const [deploy] = await t.store.deploys.list({ app: "shop", env: "production", limit: 1 });
    expect(deploy).toMatchObject({ ignoredSafeties: ["window"], user: "dev", trigger: "ui" });
    await t.waitForDeploy(deploy!.id);
    expect(problems).toEqual([]);
    await context.close();
  });

  it("marks a locked commit in the pending list", async () => {
    const bad = await t.repo.commit({ VERSION: "bad\n" }, "bad merge");
    await t.api("POST", "/api/v1/apps/shop/commit-locks", { sha: bad, reason: "revert follows" }, deployer);
    const { page, context, problems } = await openPage(browser, { token: deployer });
    await page.goto(`${t.url}/#/apps/shop/production`);
    await expect
      .poll(() => textOf(page, '[data-testid="commit-locked"]'), { timeout: 15_000 })
      .toContain("locked by dev: revert follows");
    expect(problems).toEqual([]);
    await context.close();
  });
});
