import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import type { Browser } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureBuilt } from "../helpers/built-cli.js";
import { type AgentProcess, assertConsistent, startAgent, waitForHosts } from "../helpers/fleet.js";
import { startTurnout, type TestTurnout } from "../helpers/turnout.js";
import { launchBrowser, openPage, poll, textOf } from "./browser.js";

/**
 * A fleet deploy to three real agents, watched in the browser: the host
 * grid fills and moves through its steps live, the deploy waits for
 * approval after its canary and is approved from the page, each host's own
 * output opens on click; the hosts page shows the inventory and each host
 * its history, and a layout at an environment's own deploy path with it.
 */
/** staging's deploy path on its one host (outside every agent's root). */
const EDGE_PATH = path.join(tmpdir(), `turnout-web-edge-${process.pid}-${Date.now()}`);
const MANIFEST = `repo: "{repo}"
environments:
  staging:
    deploy:
      provider: fleet
      hosts: { labels: { stage: "yes" } }
      path: ${EDGE_PATH}
      build_script: |
        mkdir -p dist
        cp VERSION dist/VERSION
      artifact: dist
      restart: [sh, -c, 'echo restarted']
  production:
    deploy:
      provider: fleet
      hosts: { labels: { role: web } }
      build_script: |
        mkdir -p dist
        cp VERSION dist/VERSION
        echo "built $TURNOUT_SHA" > dist/BUILD
      artifact: dist
      restart: [sh, -c, 'echo restarted']
      strategy: { canary: 1, batch: 2, approval: true, approval_timeout: 2m }
`;

let browser: Browser;
let t: TestTurnout;
let work: string;
let agents: AgentProcess[] = [];

beforeAll(async () => {
  [browser, t] = await Promise.all([
    launchBrowser(),
    startTurnout({ manifest: MANIFEST }),
    ensureBuilt(),
  ]).then(([b, s]) => [b, s] as const);
  work = await mkdtemp(path.join(tmpdir(), "turnout-web-fleet-"));
  // The grant decides which labels count: role=web; the zone each host declares is not granted.
  const token = (
    await t.api("POST", "/api/v1/tokens", {
      name: "enroll",
      role: "agent",
      apps: ["shop"],
      labels: ["role=web"],
    })
  ).body.token;
  agents = ["web-1", "web-2", "web-3"].map((name) =>
    startAgent({
      serverUrl: t.url,
      token,
      name,
      root: path.join(work, name),
      labels: { role: "web", zone: "a" },
    }),
  );
  await waitForHosts(
    t.api,
    agents.map((a) => a.name),
  );
});

afterAll(async () => {
  await browser?.close();
  for (const a of agents) await a.kill().catch(() => undefined);
  await assertConsistent(agents.map((a) => a.root)).catch(() => undefined);
  await t?.stop();
  if (work) await rm(work, { recursive: true, force: true });
  await rm(EDGE_PATH, { recursive: true, force: true });
});

describe("a fleet deploy in the browser", () => {
  it("fills the host grid live, waits for approval, is approved from the page and ends healthy", async () => {
    const { page, context, problems } = await openPage(browser, { token: t.adminToken });
    const { body } = await t.api("POST", "/api/v1/apps/shop/environments/production/deploys", {});
    const id = body.deploy.id;
    await page.goto(`${t.url}/#/deploys/${id}`);
    const grid = page.getByTestId("host-grid");
    await poll(() => grid.locator(".host-tile").count(), { timeout: 30_000 }).toBe(3);
    // The canary is switched and the deploy waits: the page says so and offers the answer.
    await expect
      .poll(() => page.getByRole("button", { name: "Approve the rest" }).count(), { timeout: 30_000 })
      .toBe(1);
    expect(await textOf(page, ".page-head")).toContain("waiting for approval");
    const steps = async () =>
      grid
        .locator(".host-tile")
        .evaluateAll((tiles) =>
          tiles.map((el) => `${el.getAttribute("data-host")}:${el.getAttribute("data-step")}`),
        );
    await poll(steps, { timeout: 15_000 }).toEqual(["web-1:healthy", "web-2:staged", "web-3:staged"]);
    await page.getByRole("button", { name: "Approve the rest" }).click();
    await expect
      .poll(steps, { timeout: 30_000 })
      .toEqual(["web-1:healthy", "web-2:healthy", "web-3:healthy"]);
    await expect
      .poll(() => page.locator(".page-head [data-status]").getAttribute("data-status"), { timeout: 30_000 })
      .toBe("succeeded");
    // One host's own output, on click.
    await grid.locator('[data-host="web-2"]').click();
    const output = page.getByTestId("host-output");
    await poll(() => textOf(page, '[data-testid="host-output"] .log-scroll')).toContain("[web-2]");
    const lines = await output.locator(".log-line .lt").allTextContents();
    expect(lines.length).toBeGreaterThan(1);
    expect(lines.every((l) => l.startsWith("[web-2] "))).toBe(true);
    const phases = await page.locator(".phase .phase-name").allTextContents();
    expect(phases).toContain("approval");
    expect(phases).toContain("rollout");
    expect(problems).toEqual([]);
    await context.close();
  });

  it("lists the hosts with labels, connection and the release each runs, and each host's history", async () => {
    const { page, context } = await openPage(browser, { token: t.adminToken });
    await page.goto(`${t.url}/#/hosts`);
    const table = page.getByTestId("hosts-table");
    await poll(() => table.locator("tbody tr").count(), { timeout: 15_000 }).toBe(3);
    const row = table.locator('tr[data-host="web-1"]');
    const text = (await row.textContent()) ?? "";
    expect(text).toContain("role=web");
    expect(text).toContain("connected");
    // A label the host declared beyond its grant is shown, struck through: it does not count.
    expect(await row.locator(".label-chip.ungranted").allTextContents()).toEqual(["zone=a"]);
    const release = (await t.store.releases.current("shop", "production"))!.artifact!.slice(0, 12);
    await poll(async () => (await row.textContent()) ?? "").toContain(release);
    await poll(async () => (await row.textContent()) ?? "").toContain("in sync");
    // The overview knows the fleet too.
    await page.goto(`${t.url}/#/`);
    await poll(() => page.locator('[data-env="shop/production"]').count()).toBe(1);
    expect(await textOf(page, '[data-env="shop/production"]')).not.toContain("drifted");
    // A host's history.
    await page.goto(`${t.url}/#/hosts/web-3`);
    const history = page.getByTestId("host-history");
    await poll(() => history.locator("tbody tr").count(), { timeout: 15_000 }).toBe(1);
    expect(await textOf(page, '[data-testid="host-history"]')).toContain("shop/production#1");
    expect(await textOf(page, '[data-testid="host-history"]')).toContain("healthy");
    await context.close();
  });

  it("shows a layout at an environment's own deploy path on the hosts page", async () => {
    const token = (
      await t.api("POST", "/api/v1/tokens", {
        name: "enroll-edge",
        role: "agent",
        apps: ["shop"],
        labels: ["role=web", "stage=yes"],
      })
    ).body.token;
    const edge = startAgent({
      serverUrl: t.url,
      token,
      name: "edge-1",
      root: path.join(work, "edge-1"),
      // In production's fleet too (role=web), which has not deployed to it: one app, two layouts.
      labels: { role: "web", stage: "yes" },
    });
    agents.push(edge);
    await waitForHosts(t.api, ["edge-1"]);
    const { body } = await t.api("POST", "/api/v1/apps/shop/environments/staging/deploys", {});
    expect((await t.waitForDeploy(body.deploy.id, 60_000)).status).toBe("succeeded");
    const { page, context, problems } = await openPage(browser, { token: t.adminToken });
    await page.goto(`${t.url}/#/hosts`);
    const row = page.getByTestId("hosts-table").locator('tr[data-host="edge-1"]');
    const release = (await t.store.releases.current("shop", "staging"))!.artifact!.slice(0, 12);
    await poll(async () => (await row.textContent()) ?? "", { timeout: 15_000 }).toContain(`at ${EDGE_PATH}`);
    expect(await row.textContent()).toContain(release);
    // Each environment's state sits on the line of its own layout: staging's at the path only.
    const line = row.locator(".run-line", { hasText: `at ${EDGE_PATH}` });
    await poll(async () => (await line.textContent()) ?? "").toContain("in sync");
    expect(await line.locator(".env-state a").allTextContents()).toEqual(["staging"]);
    // The production hosts hold no layout there.
    expect(
      await page.getByTestId("hosts-table").locator('tr[data-host="web-1"]').textContent(),
    ).not.toContain(EDGE_PATH);
    expect(problems).toEqual([]);
    await context.close();
  });
});
