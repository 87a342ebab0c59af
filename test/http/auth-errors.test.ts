// biome-ignore-all lint/suspicious/noExplicitAny: API responses are untyped JSON in these tests
import { createHash } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureBuilt } from "../helpers/built-cli.js";
import { startTurnout, type TestTurnout } from "../helpers/turnout.js";

/**
 * The edges of the API: who may call what, and how every refusal looks. All
 * against the real server, engine and store.
 */
let t: TestTurnout;
const tokens: Record<string, string> = {};

async function makeToken(name: string, role: string, apps?: string[]): Promise<string> {
  const res = await t.api("POST", "/api/v1/tokens", { name, role, ...(apps ? { apps } : {}) });
  expect(res.status).toBe(201);
  return res.body.token as string;
}

beforeAll(async () => {
  t = await startTurnout();
  tokens["viewer"] = await makeToken("viewer", "viewer");
  tokens["deployer"] = await makeToken("deployer", "deployer");
  tokens["blog-only"] = await makeToken("blog-only", "deployer", ["blog"]);
  tokens["blog-admin"] = await makeToken("blog-admin", "admin", ["blog"]);
});

afterAll(async () => {
  await t?.stop();
});

function expectError(res: { status: number; body: any }, status: number, code: string): void {
  expect({ status: res.status, code: res.body?.error?.code }).toEqual({ status, code });
  expect(typeof res.body.error.message).toBe("string");
}

describe("unauthenticated routes", () => {
  it("GET /turnout-agent.cjs serves the bundled agent without a token, with its digest", async () => {
    // The bundle is a build output (bin/build-agent.js).
    await ensureBuilt();
    const res = await fetch(`${t.url}/turnout-agent.cjs`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^application\/javascript/);
    const body = Buffer.from(await res.arrayBuffer());
    expect(body.subarray(0, 19).toString()).toBe("#!/usr/bin/env node");
    const digest = createHash("sha256").update(body).digest("hex");
    expect(res.headers.get("x-content-sha256")).toBe(digest);
    expect(res.headers.get("etag")).toBe(`"${digest}"`);
  });

  it("GET /healthz answers without a token", async () => {
    const res = await fetch(`${t.url}/healthz`);
    expect(res.status).toBe(200);
    const body = (await res.json()) as any;
    expect(body.ok).toBe(true);
    expect(typeof body.version).toBe("string");
  });

  it("serves the OpenAPI document listing every route", async () => {
    const res = await fetch(`${t.url}/api/v1/openapi.json`);
    expect(res.status).toBe(200);
    const doc = (await res.json()) as any;
    expect(doc.openapi).toMatch(/^3\./);
    const paths = doc.paths as Record<string, Record<string, unknown>>;
    const expected: [string, string][] = [
      ["/healthz", "get"],
      ["/api/v1/apps", "get"],
      ["/api/v1/apps/{app}", "get"],
      ["/api/v1/apps/{app}/environments/{env}", "get"],
      ["/api/v1/apps/{app}/environments/{env}/deploys", "post"],
      ["/api/v1/apps/{app}/environments/{env}/deploys/{number}", "get"],
      ["/api/v1/apps/{app}/environments/{env}/releases", "get"],
      ["/api/v1/apps/{app}/environments/{env}/rollback", "post"],
      ["/api/v1/apps/{app}/environments/{env}/lock", "put"],
      ["/api/v1/apps/{app}/environments/{env}/lock", "delete"],
      ["/api/v1/deploys", "get"],
      ["/api/v1/deploys/{id}", "get"],
      ["/api/v1/deploys/{id}/cancel", "post"],
      ["/api/v1/deploys/{id}/log", "get"],
      ["/api/v1/tokens", "post"],
      ["/api/v1/tokens", "get"],
      ["/api/v1/tokens/{name}", "delete"],
      ["/api/v1/config", "get"],
      ["/api/v1/audit", "get"],
    ];
    for (const [path, method] of expected) expect(paths[path]?.[method], `${method} ${path}`).toBeDefined();
    // The deploy body schema is documented, including the accepted triggers.
    const body = (paths["/api/v1/apps/{app}/environments/{env}/deploys"]!["post"] as any).requestBody.content[
      "application/json"
    ].schema;
    expect(body.properties.trigger.enum).toEqual(["api", "cli", "ui"]);
    expect(doc.components.securitySchemes.bearer.scheme).toBe("bearer");
    // A rollback needs no body; a lock needs one.
    expect(
      (paths["/api/v1/apps/{app}/environments/{env}/rollback"]!["post"] as any).requestBody.required,
    ).toBe(false);
    expect((paths["/api/v1/apps/{app}/environments/{env}/lock"]!["put"] as any).requestBody.required).toBe(
      true,
    );
    // The document itself and its generator's internals are not listed.
    expect(paths["/api/v1/openapi.json"]).toBeUndefined();
  });
});

describe("authentication", () => {
  it("401 without a token, with WWW-Authenticate", async () => {
    const res = await fetch(`${t.url}/api/v1/apps`);
    expect(res.status).toBe(401);
    expect(res.headers.get("www-authenticate")).toMatch(/^Bearer/);
    expect(((await res.json()) as any).error.code).toBe("E_UNAUTHORIZED");
  });

  it("401 with a wrong token or a wrong scheme", async () => {
    expectError(await t.api("GET", "/api/v1/apps", undefined, "tnt_not-a-real-token"), 401, "E_UNAUTHORIZED");
    const basic = await fetch(`${t.url}/api/v1/apps`, {
      headers: { authorization: `Basic ${t.adminToken}` },
    });
    expect(basic.status).toBe(401);
  });

  it("401 for a revoked token, and the token list never shows secrets", async () => {
    const token = await makeToken("short-lived", "viewer");
    expect((await t.api("GET", "/api/v1/apps", undefined, token)).status).toBe(200);
    const revoked = await t.api("DELETE", "/api/v1/tokens/short-lived");
    expect(revoked).toMatchObject({ status: 200, body: { revoked: "short-lived" } });
    expectError(await t.api("GET", "/api/v1/apps", undefined, token), 401, "E_UNAUTHORIZED");
    const list = await t.api("GET", "/api/v1/tokens");
    expect(list.status).toBe(200);
    const entry = list.body.tokens.find((x: any) => x.name === "short-lived");
    expect(entry.revokedAt).not.toBeNull();
    expect(JSON.stringify(list.body)).not.toContain(token);
  });
});

describe("authorization", () => {
  it("403 when a viewer deploys, locks or cancels", async () => {
    expectError(
      await t.api("POST", "/api/v1/apps/shop/environments/staging/deploys", {}, tokens["viewer"]),
      403,
      "E_FORBIDDEN",
    );
    expectError(
      await t.api("PUT", "/api/v1/apps/shop/environments/staging/lock", { reason: "x" }, tokens["viewer"]),
      403,
      "E_FORBIDDEN",
    );
    expectError(
      await t.api("POST", "/api/v1/apps/shop/environments/staging/rollback", {}, tokens["viewer"]),
      403,
      "E_FORBIDDEN",
    );
    // Nothing was queued by the refused request.
    expect(await t.store.deploys.list({ app: "shop", limit: 10 })).toEqual([]);
  });

  it("viewers read; only admins manage tokens", async () => {
    expect((await t.api("GET", "/api/v1/apps", undefined, tokens["viewer"])).status).toBe(200);
    expect((await t.api("GET", "/api/v1/config", undefined, tokens["viewer"])).status).toBe(200);
    expectError(await t.api("GET", "/api/v1/tokens", undefined, tokens["deployer"]), 403, "E_FORBIDDEN");
    expectError(
      await t.api("POST", "/api/v1/tokens", { name: "sneaky", role: "admin" }, tokens["deployer"]),
      403,
      "E_FORBIDDEN",
    );
    expectError(
      await t.api("DELETE", "/api/v1/tokens/viewer", undefined, tokens["viewer"]),
      403,
      "E_FORBIDDEN",
    );
  });

  it("an admin limited to some apps cannot mint tokens (it could mint an unlimited one)", async () => {
    expectError(
      await t.api("POST", "/api/v1/tokens", { name: "escalate", role: "admin" }, tokens["blog-admin"]),
      403,
      "E_FORBIDDEN",
    );
  });

  it("a token limited to another app sees no shop: for it, shop does not exist (404)", async () => {
    const token = tokens["blog-only"];
    const apps = await t.api("GET", "/api/v1/apps", undefined, token);
    expect(apps.status).toBe(200);
    expect(apps.body.apps).toEqual([]);
    expectError(await t.api("GET", "/api/v1/apps/shop", undefined, token), 404, "E_NOT_FOUND");
    expectError(
      await t.api("GET", "/api/v1/apps/shop/environments/staging", undefined, token),
      404,
      "E_NOT_FOUND",
    );
    expectError(
      await t.api("POST", "/api/v1/apps/shop/environments/staging/deploys", {}, token),
      404,
      "E_NOT_FOUND",
    );
    // Filtering by it finds nothing, as filtering by an app that never deployed.
    const filtered = await t.api("GET", "/api/v1/deploys?app=shop", undefined, token);
    expect(filtered).toMatchObject({ status: 200, body: { deploys: [], nextCursor: null } });
    // Word for word the answer for an app that does not exist.
    const shop = await t.api("GET", "/api/v1/apps/shop", undefined, token);
    const missing = await t.api("GET", "/api/v1/apps/no-such-app", undefined, token);
    expect(JSON.stringify(missing.body).replaceAll("no-such-app", "shop")).toBe(JSON.stringify(shop.body));
  });
});

describe("request errors", () => {
  it("404 for unknown apps, environments, deploys and routes", async () => {
    expectError(await t.api("GET", "/api/v1/apps/nope"), 404, "E_NOT_FOUND");
    expectError(await t.api("GET", "/api/v1/apps/shop/environments/nope"), 404, "E_NOT_FOUND");
    expectError(await t.api("POST", "/api/v1/apps/shop/environments/nope/deploys", {}), 404, "E_NOT_FOUND");
    expectError(await t.api("GET", "/api/v1/apps/shop/environments/staging/deploys/999"), 404, "E_NOT_FOUND");
    expectError(await t.api("GET", "/api/v1/deploys/999999"), 404, "E_NOT_FOUND");
    expectError(await t.api("GET", "/api/v1/deploys/999999/log"), 404, "E_NOT_FOUND");
    expectError(await t.api("POST", "/api/v1/deploys/999999/cancel"), 404, "E_NOT_FOUND");
    expectError(await t.api("DELETE", "/api/v1/tokens/nobody"), 404, "E_NOT_FOUND");
    expectError(await t.api("GET", "/api/v1/nothing-here"), 404, "E_NOT_FOUND");
    expectError(await t.api("GET", "/nothing-here"), 404, "E_NOT_FOUND");
  });

  it("422 E_INVALID_NAME for malformed app and environment names", async () => {
    for (const path of [
      "/api/v1/apps/Shop",
      "/api/v1/apps/..%2F..%2Fetc",
      "/api/v1/apps/shop/environments/Prod_1",
      "/api/v1/deploys?app=-x",
    ]) {
      const res = await t.api("GET", path);
      expectError(res, 422, "E_INVALID_NAME");
      expect(res.body.error.details.kind).toMatch(/app|environment/);
    }
    const res = await t.api("POST", "/api/v1/tokens", { name: "Bad Name", role: "viewer" });
    expectError(res, 422, "E_INVALID_NAME");
  });

  it("422 for hostile refs and parameters; nothing is queued", async () => {
    const refs = ["--upload-pack=touch /tmp/pwned", "$(touch marker)", "../../etc/passwd"];
    for (const ref of refs) {
      const res = await t.api("POST", "/api/v1/apps/shop/environments/staging/deploys", { ref });
      expectError(res, 422, "E_INVALID_REF");
    }
    const param = await t.api("POST", "/api/v1/apps/shop/environments/staging/deploys", {
      params: { "BAD NAME": "x" },
    });
    expectError(param, 422, "E_INVALID_PARAM");
    expect(await t.store.deploys.list({ app: "shop", limit: 10 })).toEqual([]);
  });

  it("400 for malformed JSON, wrong types, unknown fields and triggers clients may not claim", async () => {
    const malformed = await fetch(`${t.url}/api/v1/apps/shop/environments/staging/deploys`, {
      method: "POST",
      headers: { authorization: `Bearer ${t.adminToken}`, "content-type": "application/json" },
      body: '{"ref": "main",',
    });
    expect(malformed.status).toBe(400);
    expect(((await malformed.json()) as any).error.code).toBe("E_BAD_REQUEST");

    const cases: unknown[] = [
      { force: "yes" },
      { ref: 42 },
      { params: { A: 1 } },
      { trigger: "auto" },
      { trigger: "rollback" },
      { refs: "main" },
      [1, 2],
    ];
    for (const body of cases) {
      const res = await t.api("POST", "/api/v1/apps/shop/environments/staging/deploys", body);
      expectError(res, 400, "E_VALIDATION");
      expect(Array.isArray(res.body.error.details.issues)).toBe(true);
      expect(res.body.error.details.issues[0].in).toBe("body");
    }
    expectError(await t.api("PUT", "/api/v1/apps/shop/environments/staging/lock", {}), 400, "E_VALIDATION");
    expectError(
      await t.api("PUT", "/api/v1/apps/shop/environments/staging/lock", { reason: "x".repeat(501) }),
      400,
      "E_VALIDATION",
    );
    expectError(await t.api("GET", "/api/v1/deploys?limit=0"), 400, "E_VALIDATION");
    expectError(await t.api("GET", "/api/v1/deploys?limit=201"), 400, "E_VALIDATION");
    expectError(await t.api("GET", "/api/v1/deploys?status=exploded"), 400, "E_VALIDATION");
    expectError(await t.api("GET", "/api/v1/deploys?cursor=garbage"), 400, "E_VALIDATION");
    expectError(await t.api("GET", "/api/v1/deploys/not-a-deploy"), 400, "E_VALIDATION");
    expectError(await t.api("GET", "/api/v1/apps/shop/environments/staging/deploys/0"), 400, "E_VALIDATION");
    expect(await t.store.deploys.list({ app: "shop", limit: 10 })).toEqual([]);
  });

  it("refuses __proto__ keys in bodies", async () => {
    const res = await fetch(`${t.url}/api/v1/apps/shop/environments/staging/deploys`, {
      method: "POST",
      headers: { authorization: `Bearer ${t.adminToken}`, "content-type": "application/json" },
      body: '{"params": {"__proto__": {"polluted": "yes"}}}',
    });
    expect(res.status).toBe(400);
    expect(({} as Record<string, unknown>)["polluted"]).toBeUndefined();
  });

  it("413 E_PAYLOAD_TOO_LARGE for a body over the limit", async () => {
    const res = await fetch(`${t.url}/api/v1/apps/shop/environments/staging/deploys`, {
      method: "POST",
      headers: { authorization: `Bearer ${t.adminToken}`, "content-type": "application/json" },
      body: JSON.stringify({ params: { BIG: "x".repeat(t.settings.bodyLimit + 10) } }),
    });
    expect(res.status).toBe(413);
    expect(((await res.json()) as any).error.code).toBe("E_PAYLOAD_TOO_LARGE");
    expect(await t.store.deploys.list({ app: "shop", limit: 10 })).toEqual([]);
  });

  it("415 for bodies that are not JSON", async () => {
    const res = await fetch(`${t.url}/api/v1/apps/shop/environments/staging/lock`, {
      method: "PUT",
      headers: { authorization: `Bearer ${t.adminToken}`, "content-type": "text/plain" },
      body: "reason=because",
    });
    expect(res.status).toBe(415);
    expect(((await res.json()) as any).error.code).toBe("E_UNSUPPORTED_MEDIA_TYPE");
  });
});

describe("tokens, config and audit", () => {
  it("creates a token that works, limited to its apps", async () => {
    const res = await t.api("POST", "/api/v1/tokens", { name: "ci-shop", role: "deployer", apps: ["shop"] });
    expect(res.status).toBe(201);
    expect(res.body.token).toMatch(/^tnt_/);
    expect(res.body.info).toMatchObject({
      name: "ci-shop",
      role: "deployer",
      apps: ["shop"],
      createdBy: "admin",
    });
    const apps = await t.api("GET", "/api/v1/apps", undefined, res.body.token);
    expect(apps.body.apps.map((a: any) => a.name)).toEqual(["shop"]);
    expectError(
      await t.api("POST", "/api/v1/tokens", { name: "ci-shop", role: "viewer" }),
      409,
      "E_CONFLICT",
    );
  });

  it("GET /config gives the revision, load time and problems", async () => {
    const res = await t.api("GET", "/api/v1/config", undefined, tokens["viewer"]);
    expect(res.status).toBe(200);
    expect(res.body).toEqual({
      revision: t.engine.config().revision,
      loadedAt: t.engine.config().loadedAt,
      problems: [],
      source: { kind: "dir", path: t.configDir },
      lastError: null,
      loading: [],
    });
  });

  it("GET /audit lists token changes to unlimited readers, hides them from limited tokens", async () => {
    const all = await t.api("GET", "/api/v1/audit?limit=500");
    expect(all.status).toBe(200);
    expect(all.body.events.some((e: any) => e.action === "token.create" && e.details.name === "viewer")).toBe(
      true,
    );
    const limited = await t.api("GET", "/api/v1/audit", undefined, tokens["blog-only"]);
    expect(limited.status).toBe(200);
    expect(limited.body.events).toEqual([]);
  });
});
