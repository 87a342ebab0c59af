import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTurnout, type TestTurnout } from "../helpers/turnout.js";
import { launchBrowser, openPage, poll, textOf } from "./browser.js";

/**
 * The deploy flow in the browser against the real server: deploy from the
 * environment page and watch the log reach success, see the overview update
 * live, lock and see the deploy button refuse with the reason, roll back
 * after a preview that lists exactly the releases it undoes.
 */
const MANIFEST = `repo: "{repo}"
environments:
  staging:
    branch: main
    deploy:
      provider: shell
      script: |
        printf '\\033[1;34m==> deploying\\033[0m %s\\n' "$TURNOUT_SHA"
        for step in install migrate warm switch; do echo "  - $step"; sleep 0.2; done
        printf '\\033[32mstaging is now on %s\\033[0m\\n' "$(cat VERSION)"
      timeout: 2m
  production:
    branch: main
    deploy:
      provider: shell
      command: [bash, deploy.sh, "{env}", "{sha}", "{ref}"]
      timeout: 2m
`;

let browser: Browser;
let t: TestTurnout;
let deployer: string;

beforeAll(async () => {
  [browser, t] = await Promise.all([launchBrowser(), startTurnout({ manifest: MANIFEST })]);
  const made = await t.api("POST", "/api/v1/tokens", { name: "dev", role: "deployer" });
  deployer = made.body.token;
});

afterAll(async () => {
  await browser?.close();
  await t?.stop();
});

async function envPage(
  token = t.adminToken,
  env = "staging",
): Promise<{ page: Page; close: () => Promise<void> }> {
  const { page, context, problems } = await openPage(browser, { token });
  await page.goto(`${t.url}/#/apps/shop/${env}`);
  await expect
    .poll(() => page.locator('[data-testid="deploy-reasons"] .reason').count(), { timeout: 15_000 })
    .toBeGreaterThan(0);
  return {
    page,
    close: async () => {
      expect(problems).toEqual([]);
      await context.close();
    },
  };
}

async function apiDeploy(env: string): Promise<any> {
  const { status, body } = await t.api("POST", `/api/v1/apps/shop/environments/${env}/deploys`, {});
  expect(status, JSON.stringify(body)).toBe(202);
  return t.waitForDeploy(body.deploy.id);
}

describe("deploying from the browser", () => {
  it("deploys from the environment page and follows the log to success", async () => {
    const { page, close } = await envPage();
    await page.locator('[data-action="deploy"]').click();
    await poll(() => page.url()).toMatch(/#\/deploys\/\d+$/);
    await poll(() => textOf(page, ".log"), { timeout: 20_000 }).toContain("==> succeeded");
    await expect
      .poll(() => page.locator(".page-head [data-status]").getAttribute("data-status"))
      .toBe("succeeded");
    const log = await textOf(page, ".log");
    expect(log).toContain("staging is now on 1.0.0");
    expect(log).not.toContain("\u001b[");
    // Colours are drawn, not printed: the ANSI codes became styled spans.
    expect(await page.locator(".log-line .ansi-fg2").count()).toBeGreaterThan(0);
    expect(await page.locator(".log-line .ansi-bold.ansi-fg4").count()).toBeGreaterThan(0);
    // The timeline names the phases with their durations.
    const phases = await page.locator(".phase .phase-name").allTextContents();
    expect(phases).toEqual(["queued", "starting", "workspace", "deploy"]);
    // Back to the environment without scrolling: the breadcrumb is above the log.
    await page.locator('[data-action="to-environment"]').click();
    await poll(() => page.url()).toContain("#/apps/shop/staging");
    await close();
  });

  it("updates the overview live: the running deploy appears, then the new release", async () => {
    const { page, context, problems } = await openPage(browser, { token: t.adminToken });
    await page.goto(`${t.url}/#/`);
    await poll(() => page.locator('[data-env="shop/staging"]').count()).toBe(1);
    const sha = await t.repo.commit({ VERSION: "1.1.0\n" }, "Ship the new checkout");
    const queued = await t.api("POST", "/api/v1/apps/shop/environments/staging/deploys", {});
    const label = queued.body.deploy.label;
    await poll(() => textOf(page, ".running-strip"), { timeout: 10_000 }).toContain(label);
    await t.waitForDeploy(queued.body.deploy.id);
    await expect
      .poll(() => textOf(page, '[data-env="shop/staging"]'), { timeout: 10_000 })
      .toContain(sha.slice(0, 7));
    expect(await textOf(page, '[data-env="shop/staging"]')).toContain("Ship the new checkout");
    await poll(() => textOf(page, ".running-strip")).not.toContain(label);
    expect(problems).toEqual([]);
    await context.close();
  });
});

describe("locks", () => {
  it("refuses to deploy a locked environment and says why; unlocking lets it through", async () => {
    const { page, close } = await envPage(deployer);
    await page.getByLabel("Lock reason").fill("database migration until 15:00");
    await page.getByRole("button", { name: "Lock" }).click();
    const reasons = page.getByTestId("deploy-reasons");
    await expect
      .poll(() => textOf(page, '[data-testid="deploy-reasons"]'))
      .toContain("Blocked: shop/staging is locked by dev: database migration until 15:00");
    expect(await page.locator('[data-action="deploy"]').isDisabled()).toBe(true);
    expect(await reasons.locator('[data-code="locked"]').count()).toBe(1);
    // A deployer gets no way past the lock; the API agrees.
    expect(await page.getByRole("button", { name: /Deploy anyway/ }).count()).toBe(0);
    const refused = await t.api("POST", "/api/v1/apps/shop/environments/staging/deploys", {}, deployer);
    expect(refused.body.error.code).toBe("E_LOCKED");
    expect(await textOf(page, ".lock-card")).toContain("database migration until 15:00");
    await page.getByRole("button", { name: "Unlock" }).click();
    await poll(() => page.locator('[data-action="deploy"]').isDisabled()).toBe(false);
    await close();
  });

  it("offers an admin the forced deploy past someone's lock", async () => {
    await t.api("PUT", "/api/v1/apps/shop/environments/staging/lock", { reason: "hands off" }, deployer);
    const { page, close } = await envPage(t.adminToken);
    await poll(() => page.getByRole("button", { name: /Deploy anyway/ }).count()).toBe(1);
    expect(await page.locator('[data-action="deploy"]').isDisabled()).toBe(true);
    await t.api("DELETE", "/api/v1/apps/shop/environments/staging/lock", undefined, deployer);
    await close();
  });

  it("says in words when a ref does not exist", async () => {
    const { page, close } = await envPage();
    await page.getByLabel("Ref").fill("no-such-branch");
    await expect
      .poll(() => textOf(page, '[data-testid="deploy-reasons"]'), { timeout: 10_000 })
      .toContain("Ref not found");
    expect(await page.locator('[data-action="deploy"]').isDisabled()).toBe(true);
    expect(await textOf(page, '[data-testid="deploy-reasons"]')).not.toContain("E_REF_NOT_FOUND");
    await close();
  });
});

describe("rollback", () => {
  it("previews exactly which releases a rollback undoes, then rolls back", async () => {
    // production: #1, #2, #3 on three commits.
    const first = await apiDeploy("production");
    await t.repo.commit({ a: "1" }, "Add the search box");
    const second = await apiDeploy("production");
    await t.repo.commit({ b: "2" }, "Rework the cart");
    const third = await apiDeploy("production");
    expect([first.number, second.number, third.number]).toEqual([1, 2, 3]);

    const { page, close } = await envPage(t.adminToken, "production");
    await expect
      .poll(() => page.locator('.history tr[data-number="1"] [data-action="rollback"]').count())
      .toBe(1);
    // The live release offers no rollback to itself.
    expect(await page.locator('.history tr[data-number="3"] [data-action="rollback"]').count()).toBe(0);
    await page.locator('.history tr[data-number="1"] [data-action="rollback"]').click();
    const preview = page.getByTestId("rollback-preview");
    await poll(() => preview.count()).toBe(1);
    const undone = await page
      .locator('[data-testid="undone-releases"] li')
      .evaluateAll((items) => items.map((li) => li.getAttribute("data-number")));
    expect(undone).toEqual(["3", "2"]);
    const text = await textOf(page, '[data-testid="rollback-preview"]');
    expect(text).toContain("Undoes 2 releases and 2 commits");
    expect(text).toContain("Rework the cart");
    expect(text).toContain("Add the search box");
    await page.locator('[data-action="confirm-rollback"]').click();
    await poll(() => page.url()).toMatch(/#\/deploys\/\d+$/);
    await poll(() => textOf(page, ".log"), { timeout: 20_000 }).toContain("==> succeeded");
    expect(await textOf(page, ".deploy-meta")).toContain("rollback to #1");
    // The log's last line comes before the deploy's record (its commits are described first):
    // the environment's release is what the API says a moment later.
    await poll(
      async () =>
        (await t.api("GET", "/api/v1/apps/shop/environments/production")).body.environment.current.sha,
      { timeout: 10_000 },
    ).toBe(first.sha);
    await close();
  });
});
