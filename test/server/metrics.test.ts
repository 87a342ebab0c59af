import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { startTurnout, type TestTurnout } from "../helpers/turnout.js";
import { until } from "../helpers/wait.js";

/**
 * GET /metrics of a real server after real deploys: what Prometheus would
 * scrape, with a token on the API's address and without one on the
 * --metrics-listen address.
 */
const MANIFEST = `repo: "{repo}"
environments:
  staging:
    branch: main
    deploy:
      provider: shell
      script: |
        echo "deploying $TURNOUT_SHA"
      timeout: 2m
  production:
    branch: main
    deploy:
      provider: shell
      script: |
        for i in $(seq 1 600); do [ -e "$TURNOUT_PARAM_GATE" ] && break; sleep 0.1; done
        [ -e "$TURNOUT_PARAM_GATE" ]
      timeout: 2m
`;

/** The value of one sample of a metrics text, or undefined. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split("\n")) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    const match = /^[^{ ]+(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!match) continue;
    const have = Object.fromEntries(
      [...(match[1] ?? "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((m) => [m[1], m[2]]),
    );
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) return Number(match[2]);
  }
  return undefined;
}

describe("metrics", () => {
  let t: TestTurnout | undefined;
  afterEach(async () => {
    await t?.stop();
    t = undefined;
  });

  it("counts deploys and requests, reads queues, locks and hosts; token or separate address", async () => {
    t = await startTurnout({ manifest: MANIFEST, environment: { TURNOUT_METRICS_LISTEN: "127.0.0.1:0" } });
    const gate = path.join(t.dataDir, "gate");
    const scrape = async () => {
      const res = await fetch(`${t!.url}/metrics`, { headers: { authorization: `Bearer ${t!.adminToken}` } });
      expect(res.status).toBe(200);
      expect(res.headers.get("content-type")).toContain("text/plain");
      return res.text();
    };

    const ok = await t.api("POST", "/api/v1/apps/shop/environments/staging/deploys", {});
    expect((await t.waitForDeploy(ok.body.deploy.id)).status).toBe("succeeded");
    // One running (held by its gate) and one queued behind it.
    const running = await t.api("POST", "/api/v1/apps/shop/environments/production/deploys", {
      params: { gate },
    });
    await until(
      async () => (await t!.store.deploys.get(running.body.deploy.id)).status === "running",
      30_000,
      "running",
    );
    const queued = await t.api("POST", "/api/v1/apps/shop/environments/production/deploys", {
      params: { gate },
    });
    expect(queued.status).toBe(202);
    await t.api("PUT", "/api/v1/apps/shop/environments/staging/lock", { reason: "metrics test" });

    let text = await scrape();
    expect(sample(text, "turnout_deploys_total", { app: "shop", env: "staging", outcome: "succeeded" })).toBe(
      1,
    );
    expect(sample(text, "turnout_deploy_duration_seconds_count", { app: "shop", env: "staging" })).toBe(1);
    expect(sample(text, "turnout_queue_depth", { app: "shop", env: "production" })).toBe(1);
    expect(
      sample(text, "turnout_queue_oldest_wait_seconds", { app: "shop", env: "production" }),
    ).toBeGreaterThanOrEqual(0);
    expect(sample(text, "turnout_queue_depth", { app: "shop", env: "staging" })).toBeUndefined();
    expect(sample(text, "turnout_deploys_running")).toBe(1);
    expect(sample(text, "turnout_locks")).toBe(1);
    expect(sample(text, "turnout_environment_locked", { app: "shop", env: "staging" })).toBe(1);
    expect(sample(text, "turnout_agents_connected")).toBe(0);
    // Every statement counts: the deploys above alone took dozens.
    const queries = sample(text, "turnout_database_queries_total")!;
    expect(queries).toBeGreaterThan(20);
    expect(sample(await scrape(), "turnout_database_queries_total")).toBeGreaterThan(queries);
    // Requests by route pattern, never by path (no unbounded label values).
    expect(
      sample(text, "turnout_http_request_duration_seconds_count", {
        method: "POST",
        route: "/api/v1/apps/:app/environments/:env/deploys",
        status: "202",
      }),
    ).toBe(3);
    expect(text).not.toContain('route="/api/v1/apps/shop');
    expect(sample(text, "process_cpu_seconds_total")).toBeGreaterThan(0);
    expect(sample(text, "nodejs_heap_size_used_bytes")).toBeGreaterThan(0);
    // The outbox (another part) plugs its gauges in the same way.
    t.server.metrics.add({ name: "turnout_test_backlog", help: "test", collect: () => [{ value: 7 }] });
    expect(sample(await scrape(), "turnout_test_backlog")).toBe(7);

    // The gate opens: both run, the queue empties, the lock goes.
    writeFileSync(gate, "");
    expect((await t.waitForDeploy(queued.body.deploy.id, 60_000)).status).toBe("succeeded");
    await t.api("DELETE", "/api/v1/apps/shop/environments/staging/lock");
    text = await scrape();
    expect(
      sample(text, "turnout_deploys_total", { app: "shop", env: "production", outcome: "succeeded" }),
    ).toBe(2);
    expect(sample(text, "turnout_queue_depth", { app: "shop", env: "production" })).toBeUndefined();
    expect(sample(text, "turnout_locks")).toBe(0);
    expect(sample(text, "turnout_environment_locked", { app: "shop", env: "staging" })).toBeUndefined();

    // The notification outbox: nothing subscribed here, so once the dispatcher's round has come
    // (events wait up to its 1 s settle), nothing waits and nothing failed.
    await until(
      async () => sample(await scrape(), "turnout_outbox_backlog", { channel: "-" }) === 0,
      15_000,
      "an empty outbox",
    );
    expect(text).toContain("# TYPE turnout_outbox_failed_deliveries_total gauge");

    // The shipped Grafana dashboard asks only for metrics the server has.
    const dashboard = readFileSync(
      path.join(import.meta.dirname, "../../docs/grafana-dashboard.json"),
      "utf8",
    );
    const asked = new Set(
      [...dashboard.matchAll(/\b((?:turnout|process|nodejs)_[a-z0-9_]+)/g)].map((m) =>
        m[1]!.replace(/_(bucket|count|sum)$/, ""),
      ),
    );
    const served = new Set([...text.matchAll(/^# TYPE (\S+)/gm)].map((m) => m[1]));
    const missing = [...asked].filter((name) => !served.has(name));
    expect(missing).toEqual([]);
    expect(asked.size).toBeGreaterThan(10);

    // No token: refused as any API route; the separate address needs none and serves nothing else.
    const anonymous = await fetch(`${t.url}/metrics`);
    expect(anonymous.status).toBe(401);
    expect(t.server.metricsUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const open = await fetch(`${t.server.metricsUrl}/metrics`);
    expect(open.status).toBe(200);
    expect(
      sample(await open.text(), "turnout_deploys_total", {
        app: "shop",
        env: "staging",
        outcome: "succeeded",
      }),
    ).toBe(1);
    expect((await fetch(`${t.server.metricsUrl}/api/v1/apps`)).status).toBe(404);
  }, 120_000);
});
