// biome-ignore-all lint/suspicious/noExplicitAny: API responses and JSON schemas are untyped here
import Fastify from "fastify";
import { serializerCompiler, validatorCompiler } from "fastify-type-provider-zod";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { installStrictRequests, lenientObjects } from "../../src/http/strict-requests.js";
import { rawRequest } from "../helpers/raw-http.js";
import { startTurnout, type TestTurnout } from "../helpers/turnout.js";

/**
 * Unknown body fields and query parameters are refused on every route. The
 * walk goes over the routes the server documents (its OpenAPI document is
 * generated from the routes as registered), so a new route is covered as soon
 * as it exists.
 */
let t: TestTurnout;
let doc: any;

beforeAll(async () => {
  t = await startTurnout();
  doc = await (await fetch(`${t.url}/api/v1/openapi.json`)).json();
});

afterAll(async () => {
  await t?.stop();
});

/** Path parameters that pass their schemas, so a refusal can only come from the body or the query. */
const PARAMS: Record<string, string> = {
  app: "shop",
  env: "staging",
  number: "1",
  id: "1",
  digest: "a".repeat(64),
  sha256: "a".repeat(64),
  sha: "a".repeat(40),
  name: "someone",
};

/** A smallest body the JSON schema accepts. */
function sample(schema: any): unknown {
  if (schema.anyOf) return sample(schema.anyOf.find((s: any) => s.type !== "null") ?? schema.anyOf[0]);
  if (schema.enum) return schema.enum[0];
  switch (schema.type) {
    case "object": {
      const out: Record<string, unknown> = {};
      for (const key of schema.required ?? []) out[key] = sample(schema.properties[key]);
      return out;
    }
    case "array":
      return Array.from({ length: schema.minItems ?? 0 }, () => sample(schema.items));
    case "string":
      return "x".repeat(Math.max(1, schema.minLength ?? 1));
    case "integer":
    case "number":
      return schema.minimum ?? 1;
    case "boolean":
      return false;
    default:
      return {};
  }
}

/** Bodies are raw (signed bytes, tar streams): checked by their handlers, below. */
const RAW_BODIES = new Set([
  "POST /api/v1/webhooks/github",
  "POST /api/v1/webhooks/gitlab",
  "POST /api/v1/webhooks/generic",
  "POST /api/v1/apps/{app}/artifacts",
  "POST /api/v1/integrations/slack/commands",
]);

function operations(): { method: string; path: string; url: string; op: any }[] {
  const list: { method: string; path: string; url: string; op: any }[] = [];
  for (const [path, ops] of Object.entries(doc.paths as Record<string, Record<string, any>>)) {
    const url = path.replace(/\{(\w+)\}/g, (_m, name: string) => {
      if (!(name in PARAMS)) throw new Error(`no sample for path parameter ${name} of ${path}`);
      return PARAMS[name]!;
    });
    for (const [method, op] of Object.entries(ops))
      list.push({ method: method.toUpperCase(), path, url, op });
  }
  return list;
}

async function send(method: string, url: string, body?: string) {
  const head = [
    `${method} ${url} HTTP/1.1`,
    "Host: turnout",
    `Authorization: Bearer ${t.adminToken}`,
    "Connection: close",
    ...(body !== undefined
      ? ["Content-Type: application/json", `Content-Length: ${Buffer.byteLength(body)}`]
      : []),
  ];
  return rawRequest(t.url, `${head.join("\r\n")}\r\n\r\n${body ?? ""}`);
}

function expectRefused(res: { status: number; json: any }, where: string, what: string, label: string): void {
  expect(
    { status: res.status, code: res.json?.error?.code },
    `${label}: ${JSON.stringify(res.json)}`,
  ).toEqual({
    status: 400,
    code: "E_VALIDATION",
  });
  const issues = res.json.error.details.issues as { in: string; message: string; path: string }[];
  expect(
    issues.some((i) => i.in === where && `${i.path} ${i.message}`.includes(what)),
    `${label}: ${JSON.stringify(issues)}`,
  ).toBe(true);
}

describe("every route refuses what it does not take", () => {
  it("walks a real list of routes", () => {
    const list = operations();
    expect(list.length).toBeGreaterThan(30);
    expect(list.some((o) => o.op.requestBody)).toBe(true);
  });

  it("a body with an unknown field, on routes with a body schema", async () => {
    let checked = 0;
    for (const { method, path, url, op } of operations()) {
      const schema = op.requestBody?.content?.["application/json"]?.schema;
      if (!schema || RAW_BODIES.has(`${method} ${path}`)) continue;
      const body = { ...(sample(schema) as object), unknown_field: 1 };
      expectRefused(
        await send(method, url, JSON.stringify(body)),
        "body",
        "unknown_field",
        `${method} ${path}`,
      );
      checked++;
    }
    expect(checked).toBeGreaterThanOrEqual(6);
  });

  it("any body at all, on routes without one (GET included)", async () => {
    let checked = 0;
    for (const { method, path, url, op } of operations()) {
      if (op.requestBody || RAW_BODIES.has(`${method} ${path}`)) continue;
      expectRefused(
        await send(method, url, '{"unknown_field": 1}'),
        "body",
        "takes no request body",
        `${method} ${path}`,
      );
      checked++;
    }
    expect(checked).toBeGreaterThanOrEqual(25);
  });

  it("an unknown query parameter, on every route", async () => {
    for (const { method, path, url, op } of operations()) {
      const body = op.requestBody?.content?.["application/json"]?.schema;
      const payload = body && !RAW_BODIES.has(`${method} ${path}`) ? JSON.stringify(sample(body)) : undefined;
      const query = path === "/api/v1/webhooks/generic" ? "?app=shop&unknown_param=1" : "?unknown_param=1";
      expectRefused(
        await send(method, url + query, payload),
        "querystring",
        "unknown_param",
        `${method} ${path}`,
      );
    }
  });

  it("cancel, approve, abort and reconcile take no body: a refused one changes nothing", async () => {
    const queued = await t.api("POST", "/api/v1/apps/shop/environments/staging/deploys", {});
    expect(queued.status).toBe(202);
    const id = queued.body.deploy.id;
    await t.waitForDeploy(id);
    const deploy = await t.store.deploys.get(id);
    const res = await t.api("POST", `/api/v1/deploys/${id}/cancel`, { reason: "not a field" });
    expectRefused({ status: res.status, json: res.body }, "body", "takes no request body", "cancel");
    expect(await t.store.deploys.get(id)).toEqual(deploy);
    // An empty object and an empty body are no body.
    expect((await t.api("POST", `/api/v1/deploys/${id}/cancel`, {})).body.error.code).toBe(
      "E_NOT_CANCELLABLE",
    );
  });

  it("raw-body routes refuse what is not theirs in their own terms", async () => {
    const upload = await t.api("POST", "/api/v1/apps/shop/artifacts", { unknown_field: 1 });
    expect({ status: upload.status, code: upload.body.error.code }).toEqual({
      status: 415,
      code: "E_UNSUPPORTED_MEDIA_TYPE",
    });
    const slack = await send("POST", "/api/v1/integrations/slack/commands", '{"unknown_field": 1}');
    expect({
      status: slack.status,
      code: slack.json?.error?.code,
      message: slack.json?.error?.message,
    }).toEqual({
      status: 415,
      code: "E_UNSUPPORTED_MEDIA_TYPE",
      message: "unsupported content type: Slack sends application/x-www-form-urlencoded",
    });
  });
});

describe("the registration guard", () => {
  it("finds every lenient object in a schema", () => {
    const schema = z
      .strictObject({
        a: z.object({ b: z.string() }),
        c: z.array(z.strictObject({ d: z.object({}) })).optional(),
        e: z.record(z.string(), z.object({})),
      })
      .nullish();
    expect(lenientObjects(schema)).toEqual(["$.a", "$.c[].d", "$.e.*"]);
    expect(lenientObjects(z.strictObject({ a: z.strictObject({}) }).default({ a: {} }))).toEqual([]);
  });

  it("a route registered with a lenient body or query schema stops the server from starting", async () => {
    for (const part of ["body", "querystring"] as const) {
      const app = Fastify();
      app.setValidatorCompiler(validatorCompiler);
      app.setSerializerCompiler(serializerCompiler);
      installStrictRequests(app);
      const method = part === "body" ? "POST" : "GET";
      // Registered in a plugin, as the API's routes are.
      app.register(async (scope) => {
        scope.route({
          method,
          url: "/x",
          schema: { [part]: z.object({ a: z.string() }) },
          handler: async () => ({}),
        });
      });
      await expect(app.ready()).rejects.toThrow(`${method} /x: the ${part} schema must refuse unknown keys`);
      await app.close();
    }
  });
});
