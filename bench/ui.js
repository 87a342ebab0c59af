// The web UI's budget (docs/benchmarks.md#web-ui): its JavaScript gzipped,
// and how soon the overview of 200 apps paints, measured in Chromium.
//
//   node bench/run.js ui
//
// The overview's time is the `turnout:overview-rendered` performance mark the
// page sets in the frame after the grid is first drawn with data (its first
// screenful: the remaining rows follow a frame later, `turnout:overview-complete`,
// reported too), counted from the navigation's start (the page, its script,
// /api/v1/me and /api/v1/overview included); First Contentful Paint beside it.
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { gzipSync } from "node:zlib";
import { chromium } from "playwright-core";
import { CHROMIUM, CHROMIUM_ARGS, median, ROOT, report, startServer } from "./lib.js";
import { makeRepo, openStore, seedHistory } from "./seed.js";

const APPS = 200;
const RUNS = 7;

function bundleSizes() {
  const dir = path.join(ROOT, "dist", "web", "assets");
  let js = 0;
  let jsRaw = 0;
  let css = 0;
  for (const name of readdirSync(dir)) {
    const body = readFileSync(path.join(dir, name));
    if (name.endsWith(".js")) {
      js += gzipSync(body, { level: 9 }).length;
      jsRaw += body.length;
    } else if (name.endsWith(".css")) css += gzipSync(body, { level: 9 }).length;
  }
  return { js, jsRaw, css };
}

export async function runUi(dir) {
  const sizes = bundleSizes();
  report(
    "UI JavaScript, gzipped",
    sizes.js / 1024,
    "KiB",
    `< 150 KiB (${(sizes.jsRaw / 1024).toFixed(1)} KiB raw, CSS ${(sizes.css / 1024).toFixed(1)} KiB gzipped)`,
  );

  // 200 apps × 2 environments, each with a live release whose commit is described.
  const repoDir = path.join(dir, "repo");
  const commits = makeRepo(repoDir, { count: 12, days: 10 });
  const configDir = path.join(dir, "turnout.d");
  mkdirSync(configDir, { recursive: true });
  const names = Array.from({ length: APPS }, (_, i) => `app-${String(i + 1).padStart(3, "0")}`);
  for (const name of names) {
    writeFileSync(
      path.join(configDir, `${name}.yaml`),
      `repo: ${JSON.stringify(repoDir)}\npoll_interval: 1h\nenvironments:\n  staging:\n    deploy: { provider: shell, command: ["true"] }\n  production:\n    deploy: { provider: shell, command: ["true"] }\n`,
    );
  }
  const store = await openStore(path.join(dir, "data"));
  for (const [i, app] of names.entries()) {
    for (const env of ["staging", "production"]) {
      await seedHistory(store, {
        app,
        env,
        commits: commits.slice(0, 8 + (i % 4)),
        deploys: 2,
        days: 10,
        seed: i,
      });
    }
  }
  await store.close();

  const server = await startServer(dir);
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true });
  try {
    // The API answer alone, for reference.
    const apiTimes = [];
    for (let i = 0; i < 5; i++) {
      const started = performance.now();
      const res = await fetch(`${server.url}/api/v1/overview`, {
        headers: { authorization: `Bearer ${server.token}` },
      });
      const body = await res.json();
      if (body.apps.length !== APPS) throw new Error(`overview lists ${body.apps.length} apps, not ${APPS}`);
      apiTimes.push(performance.now() - started);
    }
    report(
      `GET /api/v1/overview, ${APPS} apps (median)`,
      median(apiTimes),
      "ms",
      "(part of the paint below)",
    );

    const paints = [];
    const completes = [];
    const fcps = [];
    for (let run = 0; run < RUNS; run++) {
      // A new context each time: nothing cached, as on a first visit.
      const context = await browser.newContext({ viewport: { width: 1440, height: 900 } });
      await context.addInitScript((token) => sessionStorage.setItem("turnout.token", token), server.token);
      const page = await context.newPage();
      await page.goto(`${server.url}/#/`);
      await page.waitForFunction(
        () => performance.getEntriesByName("turnout:overview-complete").length > 0,
        null,
        {
          timeout: 30_000,
        },
      );
      const rows = await page.locator("[data-app]").count();
      if (rows !== APPS) throw new Error(`the overview drew ${rows} apps, not ${APPS}`);
      const [mark, complete, fcp] = await page.evaluate(() => [
        performance.getEntriesByName("turnout:overview-rendered")[0].startTime,
        performance.getEntriesByName("turnout:overview-complete")[0].startTime,
        performance.getEntriesByName("first-contentful-paint")[0]?.startTime ?? Number.NaN,
      ]);
      paints.push(mark);
      completes.push(complete);
      fcps.push(fcp);
      await context.close();
    }
    report(`overview of ${APPS} apps drawn, Chromium (median of ${RUNS})`, median(paints), "ms", "< 1000 ms");
    report(`  slowest of the ${RUNS}`, Math.max(...paints), "ms", "");
    report(`  all ${APPS} rows in the DOM (median)`, median(completes), "ms", "");
    report("  first contentful paint (median)", median(fcps), "ms", "");
  } finally {
    await browser.close();
    await server.stop();
  }
}
