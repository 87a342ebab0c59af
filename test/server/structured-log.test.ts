import { afterEach, describe, expect, it } from "vitest";
import { createLogger } from "../../src/observability/logger.js";
import { type RunningServer, startServer } from "../../src/server/start-server.js";
import { startTurnout, type TestTurnout } from "../helpers/turnout.js";
import { until } from "../helpers/wait.js";

/**
 * The server's log as a machine reads it: JSON lines with fields, a request
 * id per request (the caller's when well-formed), a line per deploy start and
 * end, config reload and shutdown step; and no secret in it, even at trace.
 */
const SECRET = "s3cr3t-value-that-must-not-leak";

const MANIFEST = `repo: "{repo}"
secret_env: [SHOP_API_KEY]
environments:
  staging:
    branch: main
    deploy:
      provider: shell
      script: |
        echo "using key $SHOP_API_KEY"
      timeout: 2m
`;

describe("structured server log", () => {
  let t: TestTurnout | undefined;
  let server: RunningServer | undefined;
  afterEach(async () => {
    await server?.close();
    server = undefined;
    await t?.stop();
    t = undefined;
  });

  it("logs JSON lines with request ids and deploy events, and never a secret or a token", async () => {
    t = await startTurnout({ manifest: MANIFEST, environment: { SHOP_API_KEY: SECRET } });
    await t.server.close();
    const lines: string[] = [];
    server = await startServer(t.settings, {
      logger: createLogger({ level: "trace", pretty: false, write: (text) => lines.push(text) }),
      configReloadMs: 600_000,
      polling: false,
    });
    const auth = { authorization: `Bearer ${t.adminToken}`, "content-type": "application/json" };

    const given = await fetch(`${server.url}/api/v1/apps/shop/environments/staging/deploys`, {
      method: "POST",
      headers: { ...auth, "x-request-id": "trace-abc.123" },
      body: "{}",
    });
    expect(given.status).toBe(202);
    expect(given.headers.get("x-request-id")).toBe("trace-abc.123");
    const deploy = ((await given.json()) as { deploy: { id: number } }).deploy;
    const store = server.store;
    await until(
      async () => ["succeeded", "failed"].includes((await store.deploys.get(deploy.id)).status),
      60_000,
      "the deploy to end",
    );
    expect((await store.deploys.get(deploy.id)).status).toBe("succeeded");
    // The deploy's own log has the secret masked; the server's log never has it at all.
    const log = await fetch(`${server.url}/api/v1/deploys/${deploy.id}/log`, { headers: auth });
    expect(JSON.stringify(await log.json())).toContain("using key ********");

    const made = await fetch(`${server.url}/api/v1/healthz-nope`, {
      headers: { "x-request-id": "bad id! <script>" },
    });
    const generated = made.headers.get("x-request-id");
    expect(generated).toMatch(/^[0-9a-f-]{36}$/);
    // A refused request has its id too.
    const refused = await fetch(`${server.url}/api/v1/apps`, {
      headers: { authorization: "Bearer tnt_wrong" },
    });
    expect(refused.status).toBe(401);
    expect(refused.headers.get("x-request-id")).toMatch(/^[0-9a-f-]{36}$/);

    // A blob batch is a POST that only reads (one per host of a fleet deploy): logged at debug.
    const blobs = await fetch(`${server.url}/api/v1/blobs/batch`, {
      method: "POST",
      headers: { ...auth, "x-request-id": "blob-batch-1" },
      body: JSON.stringify({ digests: ["0".repeat(64)] }),
    });
    expect(blobs.status).toBe(404);

    await server.config.refresh(); // nothing changed: no reload line
    await server.close();
    server = undefined;

    const records = lines.map((line) => JSON.parse(line) as Record<string, any>);
    for (const record of records) {
      expect(typeof record["msg"]).toBe("string");
      expect(typeof record["level"]).toBe("number");
      expect(record["time"]).toMatch(/^\d{4}-\d{2}-\d{2}T/);
    }
    const text = lines.join("");
    expect(text).not.toContain(SECRET);
    expect(text).not.toContain(t.adminToken);
    expect(text).not.toContain("tnt_wrong");

    const request = records.find((r) => r["event"] === "http.request" && r["reqId"] === "trace-abc.123");
    expect(request).toMatchObject({
      method: "POST",
      path: "/api/v1/apps/shop/environments/staging/deploys",
      route: "/api/v1/apps/:app/environments/:env/deploys",
      status: 202,
    });
    expect(request?.["level"]).toBe(30); // info: it changes something
    expect(records.find((r) => r["event"] === "http.request" && r["reqId"] === "blob-batch-1")).toMatchObject(
      {
        method: "POST",
        route: "/api/v1/blobs/batch",
        status: 404,
        level: 20, // debug, like every read
      },
    );
    expect(records.some((r) => r["event"] === "http.request" && r["reqId"] === generated)).toBe(true);
    expect(records.find((r) => r["event"] === "deploy.started")).toMatchObject({
      app: "shop",
      env: "staging",
      deploy: "shop/staging#1",
      trigger: "api",
      user: "admin",
    });
    expect(records.find((r) => r["event"] === "deploy.finished")).toMatchObject({
      deploy: "shop/staging#1",
      outcome: "succeeded",
      durationMs: expect.any(Number),
    });
    const events = records.map((r) => r["event"]).filter(Boolean);
    expect(events.slice(-3)).toEqual(["shutdown.start", "shutdown.close", "shutdown.stopped"]);
    expect(events.indexOf("server.listening")).toBeLessThan(events.indexOf("deploy.started"));
  }, 120_000);

  it("redacts token, secret and authorization fields whatever passes them", () => {
    const lines: string[] = [];
    const logger = createLogger({ level: "info", pretty: false, write: (text) => lines.push(text) });
    logger.info(
      {
        token: "tnt_abc",
        agent: { hostToken: "tnt_host" },
        headers: { authorization: "Bearer tnt_xyz", cookie: "session=1" },
        secret: "hush",
        app: "shop",
      },
      "something happened",
    );
    const record = JSON.parse(lines[0]!);
    expect(record).toMatchObject({
      token: "[redacted]",
      agent: { hostToken: "[redacted]" },
      headers: { authorization: "[redacted]", cookie: "[redacted]" },
      secret: "[redacted]",
      app: "shop",
    });
    expect(lines[0]).not.toMatch(/tnt_|hush|session=1/);
  });

  it("writes readable lines on a terminal, and only what its level lets through", () => {
    const lines: string[] = [];
    const logger = createLogger({ level: "warn", pretty: true, write: (text) => lines.push(text) });
    logger.info({ app: "shop" }, "quiet");
    logger.warn({ app: "shop", err: new Error("disk full") }, "deploy shop/staging#1: failed");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(
      /^\[\d{2}:\d{2}:\d{2}\.\d{3}\] WARN: deploy shop\/staging#1: failed: disk full\n$/,
    );
  });
});
