import { rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import type { Browser } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { stagingScript, startTurnout, type TestTurnout } from "../helpers/turnout.js";
import { launchBrowser, openPage, poll, textOf } from "./browser.js";

/**
 * A 50,000-line log stays responsive: only the lines in view are in the
 * DOM, scrolling anywhere shows the right lines, search finds a line far
 * down, following pauses when the reader scrolls up and resumes on "Jump to
 * end", and the download holds every line.
 */
const LINES = 50_000;

let browser: Browser;
let t: TestTurnout;
let deployId: number;

beforeAll(async () => {
  [browser, t] = await Promise.all([
    launchBrowser(),
    startTurnout({
      manifest: stagingScript(`
for i in $(seq 1 ${LINES}); do printf 'line %05d \\033[33mcoloured\\033[0m of the build output\\n' "$i"; done
echo "needle-in-the-haystack"
sleep 1
echo "tail after the pause"`),
    }),
  ]);
  const { body } = await t.api("POST", "/api/v1/apps/shop/environments/staging/deploys", {});
  deployId = body.deploy.id;
  const done = await t.waitForDeploy(deployId, 60_000);
  expect(done.status).toBe("succeeded");
});

afterAll(async () => {
  await browser?.close();
  await t?.stop();
});

describe("a 50,000-line log", () => {
  it("renders only the lines in view, wherever it is scrolled", async () => {
    const { page, context, problems } = await openPage(browser, { token: t.adminToken });
    await page.goto(`${t.url}/#/deploys/${deployId}`);
    await poll(() => textOf(page, ".log-toolbar"), { timeout: 30_000 }).toMatch(/50,0\d\d lines/);
    const total = await page.evaluate(
      () => document.querySelector(".log-spacer")!.getBoundingClientRect().height / 20,
    );
    expect(total).toBeGreaterThan(LINES);
    // Following: the end is in view.
    await poll(() => textOf(page, ".log-scroll")).toContain("succeeded");
    const rendered = await page.locator(".log-line").count();
    expect(rendered).toBeGreaterThan(10);
    expect(rendered).toBeLessThan(200);
    // Jump to the middle: those lines are there, and still only a screenful.
    await page.locator(".log-scroll").evaluate((el) => {
      el.scrollTop = 25_000 * 20;
    });
    await poll(() => textOf(page, ".log-scroll")).toContain("line 25001 coloured");
    expect(await page.locator(".log-line").count()).toBeLessThan(200);
    expect(await page.locator(".log-line .ansi-fg3").count()).toBeGreaterThan(10);
    // Scrolling up paused following.
    expect(await page.locator("[data-follow]").getAttribute("data-follow")).toBe("off");
    await page.locator('[data-action="jump-to-end"]').click();
    await poll(() => page.locator("[data-follow]").getAttribute("data-follow")).toBe("on");
    await poll(() => textOf(page, ".log-scroll")).toContain("tail after the pause");
    expect(problems).toEqual([]);
    await context.close();
  });

  it("finds a line by search and brings it into view", async () => {
    const { page, context } = await openPage(browser, { token: t.adminToken });
    await page.goto(`${t.url}/#/deploys/${deployId}`);
    await poll(() => textOf(page, ".log-toolbar"), { timeout: 30_000 }).toMatch(/50,0\d\d lines/);
    await page.getByLabel("Search the log").fill("line 31337");
    await poll(() => textOf(page, ".log-matches")).toBe("1 / 1");
    await poll(() => page.locator(".log-line.current").count()).toBe(1);
    expect(await textOf(page, ".log-line.current")).toContain("line 31337 coloured");
    expect(await page.locator(".log-line.current mark").count()).toBe(1);
    await page.getByLabel("Search the log").fill("needle-in-the");
    await poll(() => textOf(page, ".log-line.current")).toContain("needle-in-the-haystack");
    await context.close();
  });

  it("downloads the whole log as plain text", async () => {
    const { page, context } = await openPage(browser, { token: t.adminToken });
    await page.goto(`${t.url}/#/deploys/${deployId}`);
    await poll(() => textOf(page, ".log-toolbar"), { timeout: 30_000 }).toMatch(/50,0\d\d lines/);
    const [download] = await Promise.all([
      page.waitForEvent("download"),
      page.getByRole("button", { name: "Download" }).click(),
    ]);
    expect(download.suggestedFilename()).toBe(`shop-staging-1.log`);
    const stream = await download.createReadStream();
    let text = "";
    for await (const chunk of stream) text += chunk;
    expect(text.split("\n").filter((l) => l.startsWith("line ")).length).toBe(LINES);
    expect(text).not.toContain("\u001b");
    await context.close();
  });
});

describe("following a log while it streams", () => {
  it("pauses when the reader scrolls up and shows new lines after Jump to end", async () => {
    // The late lines wait for the test (a gate file), not for a clock: a loaded machine may open the page late.
    const gate = path.join(tmpdir(), `turnout-log-gate-${process.pid}-${Date.now()}`);
    await t.writeManifest(
      "slow",
      `repo: "{repo}"\nenvironments:\n  live:\n    deploy:\n      provider: shell\n      script: |\n        for i in $(seq 1 400); do echo "early $i"; done\n        while [ ! -e ${gate} ]; do sleep 0.1; done\n        for i in $(seq 1 400); do echo "late $i"; done\n        sleep 1\n      timeout: 1m\n`,
    );
    const { body } = await t.api("POST", "/api/v1/apps/slow/environments/live/deploys", {});
    const { page, context } = await openPage(browser, { token: t.adminToken });
    await page.goto(`${t.url}/#/deploys/${body.deploy.id}`);
    await poll(() => textOf(page, ".log-scroll"), { timeout: 15_000 }).toContain("early 400");
    expect(await page.locator("[data-follow]").getAttribute("data-follow")).toBe("on");
    await page.locator(".log-scroll").evaluate((el) => {
      el.scrollTop = 0;
    });
    await poll(() => page.locator("[data-follow]").getAttribute("data-follow")).toBe("off");
    writeFileSync(gate, "");
    // New lines arrive, but the view stays where the reader is.
    await poll(() => textOf(page, ".log-toolbar"), { timeout: 15_000 }).toMatch(/8\d\d lines/);
    expect(await page.locator(".log-scroll").evaluate((el) => el.scrollTop)).toBe(0);
    expect(await textOf(page, ".log-scroll")).toContain("early 1");
    await page.locator('[data-action="jump-to-end"]').click();
    await poll(() => textOf(page, ".log-scroll")).toContain("late 400");
    await context.close();
    rmSync(gate, { force: true });
  });
});
