import { statSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { type Browser, type BrowserContext, chromium, type Page } from "playwright-core";
import { expect } from "vitest";
import { ensureBuilt } from "../helpers/built-cli.js";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const WEB_INDEX = path.join(ROOT, "dist", "web", "index.html");

/** Debian's chromium, which `.ci/run` installs when missing; TURNOUT_TEST_CHROMIUM points elsewhere. */
export const CHROMIUM = process.env["TURNOUT_TEST_CHROMIUM"] ?? "/usr/bin/chromium";

const ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/**
 * The tests drive the UI as users get it: Vite's build in dist/web, served
 * by the real server, made by the same script as `npm start` and `npm test`
 * (bin/build-if-changed.js: nothing to do when web/ did not change).
 */
export async function ensureWebBuilt(): Promise<void> {
  await ensureBuilt();
  if (!statSync(WEB_INDEX, { throwIfNoEntry: false })) throw new Error(`the build made no ${WEB_INDEX}`);
}

/** One headless Chromium per test file (a fresh profile: Playwright gives each launch its own). */
export async function launchBrowser(): Promise<Browser> {
  await ensureWebBuilt();
  return chromium.launch({ executablePath: CHROMIUM, args: ARGS, headless: true });
}

export interface UiPage {
  context: BrowserContext;
  page: Page;
  /** Page errors and CSP violations seen so far: a test asserts there are none. */
  problems: string[];
}

/** A fresh context (its own storage) and page; `token` signs it in before any script runs. */
export async function openPage(
  browser: Browser,
  options: {
    token?: string;
    viewport?: { width: number; height: number };
    colorScheme?: "light" | "dark";
  } = {},
): Promise<UiPage> {
  const context = await browser.newContext({
    viewport: options.viewport ?? { width: 1280, height: 900 },
    colorScheme: options.colorScheme ?? "light",
  });
  if (options.token) {
    await context.addInitScript((token) => sessionStorage.setItem("turnout.token", token), options.token);
  }
  const page = await context.newPage();
  const problems: string[] = [];
  page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
  page.on("console", (message) => {
    if (message.type() === "error" && /Content Security Policy|Refused to/i.test(message.text())) {
      problems.push(`console: ${message.text()}`);
    }
  });
  return { context, page, problems };
}

/** Signs in through the form, as a person would. */
export async function signInWithForm(page: Page, url: string, token: string): Promise<void> {
  await page.goto(`${url}/#/`);
  await page.getByLabel("API token").fill(token);
  await page.getByRole("button", { name: "Sign in" }).click();
  await poll(() => page.locator(".topbar").count()).toBe(1);
}

/**
 * expect.poll with a patience fit for a loaded 2-core machine (vitest's
 * default is one second): the page gets there by itself, or the test fails
 * after 15 s. A wait, not a timed assertion.
 */
export function poll<T>(check: () => T | Promise<T>, options: { timeout?: number } = {}) {
  return expect.poll(check, { timeout: 15_000, interval: 50, ...options });
}

/** The page's visible text. */
export async function textOf(page: Page, selector = "body"): Promise<string> {
  return (await page.locator(selector).textContent()) ?? "";
}
