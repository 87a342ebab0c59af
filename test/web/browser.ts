import { execFile } from "node:child_process";
import { mkdirSync, readdirSync, rmSync, statSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { type Browser, type BrowserContext, chromium, type Page } from "playwright-core";
import { expect } from "vitest";

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

function newest(dir: string): number {
  let latest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    latest = Math.max(latest, entry.isDirectory() ? newest(full) : statSync(full).mtimeMs);
  }
  return latest;
}

function webIsFresh(): boolean {
  const built = statSync(WEB_INDEX, { throwIfNoEntry: false })?.mtimeMs ?? 0;
  return built >= newest(path.join(ROOT, "web"));
}

/**
 * The tests drive the UI as users get it: Vite's build in dist/web, served
 * by the real server. `npm test` builds first; run alone, a test file builds
 * here when dist/web is missing or older than web/ (one file at a time).
 */
export async function ensureWebBuilt(): Promise<void> {
  if (webIsFresh()) return;
  const lock = path.join(ROOT, "dist", ".web-test-build.lock");
  mkdirSync(path.dirname(lock), { recursive: true });
  const deadline = Date.now() + 120_000;
  for (;;) {
    try {
      mkdirSync(lock);
      break;
    } catch {
      const age = Date.now() - (statSync(lock, { throwIfNoEntry: false })?.mtimeMs ?? 0);
      if (age > 120_000) rmSync(lock, { recursive: true, force: true });
      if (Date.now() > deadline) throw new Error(`waited too long for ${lock}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  try {
    if (webIsFresh()) return;
    const vite = path.join(ROOT, "node_modules", "vite", "bin", "vite.js");
    await promisify(execFile)(
      process.execPath,
      [vite, "build", "--config", "web/vite.config.ts", "--logLevel", "error"],
      {
        cwd: ROOT,
      },
    );
  } finally {
    rmSync(lock, { recursive: true, force: true });
  }
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
