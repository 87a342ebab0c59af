import type { Browser } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureBuilt, turnout } from "../helpers/built-cli.js";
import { startTurnout, type TestTurnout } from "../helpers/turnout.js";
import { launchBrowser, openPage, poll, signInWithForm, textOf } from "./browser.js";

/**
 * Signing in (a pasted token, the one-time link of `turnout ui`), signing
 * out, and roles: a viewer sees no button that would fail, a token limited
 * to some apps sees only them. Real server, real Chromium.
 */
let browser: Browser;
let t: TestTurnout;
let viewer: string;
let scoped: string;

async function token(name: string, role: string, apps?: string[]): Promise<string> {
  const { status, body } = await t.api("POST", "/api/v1/tokens", { name, role, ...(apps ? { apps } : {}) });
  expect(status).toBe(201);
  return body.token;
}

beforeAll(async () => {
  [browser, t] = await Promise.all([launchBrowser(), startTurnout(), ensureBuilt()]).then(
    ([b, s]) => [b, s] as const,
  );
  await t.writeManifest(
    "blog",
    `repo: "{repo}"\nenvironments:\n  live:\n    deploy:\n      provider: shell\n      command: ["true"]\n`,
  );
  const first = await t.api("POST", "/api/v1/apps/shop/environments/staging/deploys", {});
  await t.waitForDeploy(first.body.deploy.id);
  viewer = await token("watcher", "viewer");
  scoped = await token("blog-team", "deployer", ["blog"]);
});

afterAll(async () => {
  await browser?.close();
  await t?.stop();
});

describe("signing in", () => {
  it("takes a pasted token, shows who is signed in, and serves the page under a strict CSP", async () => {
    const { page, context, problems } = await openPage(browser);
    const response = await page.goto(`${t.url}/`);
    expect(response?.headers()["content-security-policy"]).toContain("default-src 'self'");
    expect(response?.headers()["content-security-policy"]).toContain("script-src 'self'");
    await signInWithForm(page, t.url, t.adminToken);
    await poll(() => page.locator('[data-app="shop"]').count()).toBe(1);
    expect(await textOf(page, ".topbar")).toContain("admin");
    expect(await page.evaluate(() => sessionStorage.getItem("turnout.token"))).toBe(t.adminToken);
    expect(await page.evaluate(() => localStorage.getItem("turnout.token"))).toBeNull();
    // Signing out forgets the token and shows the form again.
    await page.getByRole("button", { name: "Sign out" }).click();
    await poll(() => page.getByLabel("API token").count()).toBe(1);
    expect(await page.evaluate(() => sessionStorage.getItem("turnout.token"))).toBeNull();
    expect(problems).toEqual([]);
    await context.close();
  });

  it("explains a refused token in words, never as raw JSON", async () => {
    const { page, context } = await openPage(browser);
    await page.goto(`${t.url}/#/`);
    await page.getByLabel("API token").fill("tnt_not-a-real-token");
    await page.getByRole("button", { name: "Sign in" }).click();
    const alert = page.getByRole("alert");
    await poll(() => alert.count()).toBe(1);
    const text = (await alert.textContent()) ?? "";
    expect(text).toContain("Signed out");
    expect(text).toContain("Invalid or revoked token");
    expect(text).not.toContain("{");
    expect(text).not.toContain("E_UNAUTHORIZED");
    await context.close();
  });

  it("signs in with the one-time link of `turnout ui`, once, and takes the code out of the address bar", async () => {
    const cli = await turnout(["ui", "--no-open", "--server", t.url, "--token", t.adminToken]);
    expect(cli.code, cli.stderr).toBe(0);
    const link = /(http:\/\/\S+#\/login\?code=[A-Za-z0-9_-]+)/.exec(cli.stdout)?.[1];
    expect(link).toBeDefined();
    const { page, context } = await openPage(browser);
    await page.goto(link!);
    await poll(() => page.locator('[data-app="shop"]').count(), { timeout: 15_000 }).toBe(1);
    expect(page.url()).not.toContain("code=");
    const session = await page.evaluate(() => sessionStorage.getItem("turnout.token"));
    expect(session).toMatch(/^tnt_/);
    expect(session).not.toBe(t.adminToken);
    expect((await t.api("GET", "/api/v1/me", undefined, session!)).body.me).toMatchObject({
      session: true,
      role: "admin",
    });
    // Signing out revokes that browser token on the server.
    await page.getByRole("button", { name: "Sign out" }).click();
    await poll(() => page.getByLabel("API token").count()).toBe(1);
    await poll(async () => (await t.api("GET", "/api/v1/me", undefined, session!)).status).toBe(401);
    // The same link a second time: refused, in words.
    const again = await openPage(browser);
    await again.page.goto(link!);
    await poll(() => again.page.getByRole("alert").count()).toBe(1);
    expect(await again.page.getByRole("alert").textContent()).toContain("invalid, used or expired");
    await again.context.close();
    await context.close();
  });
});

describe("roles", () => {
  it("shows a viewer no deploy, lock or rollback button", async () => {
    const { page, context } = await openPage(browser, { token: viewer });
    await page.goto(`${t.url}/#/apps/shop/staging`);
    await poll(() => page.getByTestId("read-only").count()).toBe(1);
    await poll(() => page.locator(".history tbody tr").count()).toBeGreaterThan(0);
    expect(await page.locator('[data-action="deploy"]').count()).toBe(0);
    expect(await page.getByRole("button", { name: "Lock" }).count()).toBe(0);
    expect(await page.locator('[data-action="rollback"]').count()).toBe(0);
    expect(await textOf(page, ".topbar")).toContain("viewer");
    // The deploy page has no cancel button either.
    const { body } = await t.api("GET", "/api/v1/deploys?app=shop&env=staging&limit=1");
    await page.goto(`${t.url}/#/deploys/${body.deploys[0].id}`);
    await poll(() => page.locator(".log-line").count()).toBeGreaterThan(0);
    expect(await page.locator('[data-action="cancel"]').count()).toBe(0);
    await context.close();
  });

  it("shows a token limited to one app only that app, and another app's page as an error in words", async () => {
    const { page, context } = await openPage(browser, { token: scoped });
    await page.goto(`${t.url}/#/`);
    await poll(() => page.locator('[data-app="blog"]').count()).toBe(1);
    expect(await page.locator('[data-app="shop"]').count()).toBe(0);
    expect(await textOf(page, "main")).not.toContain("shop");
    await page.goto(`${t.url}/#/apps/shop/staging`);
    await poll(() => page.getByRole("alert").count()).toBeGreaterThan(0);
    const alert = (await page.getByRole("alert").first().textContent()) ?? "";
    expect(alert).not.toContain("{");
    expect(alert.toLowerCase()).toMatch(/not allowed|not found/);
    await context.close();
  });
});

describe("keyboard", () => {
  it("reaches an environment from the overview by keyboard alone, with a visible focus", async () => {
    const { page, context } = await openPage(browser, { token: t.adminToken });
    await page.goto(`${t.url}/#/`);
    await poll(() => page.locator('[data-env="shop/staging"]').count()).toBe(1);
    await page.keyboard.press("/");
    expect(await page.evaluate(() => document.activeElement?.getAttribute("aria-label"))).toBe("Search apps");
    await page.keyboard.type("shop");
    let focused = "";
    for (let i = 0; i < 25 && focused !== "shop/staging"; i++) {
      await page.keyboard.press("Tab");
      focused = (await page.evaluate(() => document.activeElement?.getAttribute("data-env"))) ?? "";
    }
    expect(focused).toBe("shop/staging");
    const outline = await page.evaluate(() => getComputedStyle(document.activeElement!).outlineStyle);
    expect(outline).toBe("solid");
    await page.keyboard.press("Enter");
    await poll(() => page.url()).toContain("#/apps/shop/staging");
    await context.close();
  });
});
