import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { isValidName } from "../../src/domain/names.js";
import { rawRequest } from "../helpers/raw-http.js";
import { startTurnout, type TestTurnout } from "../helpers/turnout.js";
import { hostileString, longString, markers, VALID_LOOKING } from "./hostile-input.js";
import { expectErrorFormat, expectNoServerError } from "./http-assertions.js";
import { runs } from "./property-runs.js";

/**
 * Names in URL paths (apps, environments, hosts, tokens, deploys, digests,
 * hosted repositories), in query strings and in bodies (token names, apps
 * and labels of grants, slots, component names), against one real server: long
 * names, encoded slashes, dots, percent signs that decode to nothing, raw
 * `..` and `//` (sent over a socket as they are, since fetch() would tidy
 * them). Every answer is below 500; every API refusal is in Turnout's error
 * format with a stable code; a well-formed name of an app that does not
 * exist is a 404; and nothing the names hold runs.
 */
const markerDir = mkdtempSync(path.join(tmpdir(), "turnout-prop-url-names-"));
let t: TestTurnout;
let token: string;

beforeAll(async () => {
  t = await startTurnout();
  // Requests carry a token of their own, with a name no generated value can revoke.
  const name = `prop-${randomBytes(8).toString("hex")}`;
  token = (await t.store.tokens.create({ name, role: "admin", apps: null, createdBy: "test" })).token;
}, 120_000);

afterAll(async () => {
  await t?.stop();
  rmSync(markerDir, { recursive: true, force: true });
});

interface Route {
  method: "GET" | "POST" | "PUT" | "DELETE";
  path: string;
  /** The body, given the generated value `v`: names travel in bodies too (tokens, grants, slots). */
  body?: (v: string) => unknown;
}

/** Routes whose path takes names, with a body each would accept when the names are right. */
const ROUTES: Route[] = [
  { method: "GET", path: "/api/v1/apps/:a" },
  { method: "GET", path: "/api/v1/apps/:a/environments/:b" },
  { method: "POST", path: "/api/v1/apps/:a/environments/:b/deploys", body: () => ({}) },
  { method: "POST", path: "/api/v1/apps/shop/environments/staging/deploys", body: (v) => ({ slot: v }) },
  {
    method: "POST",
    path: "/api/v1/apps/shop/environments/staging/deploys",
    body: (v) => ({ refs: { [v]: "main" } }),
  },
  { method: "GET", path: "/api/v1/apps/:a/environments/:b/deploys/:c" },
  { method: "GET", path: "/api/v1/apps/:a/environments/:b/releases" },
  { method: "GET", path: "/api/v1/apps/:a/environments/:b/pending" },
  { method: "GET", path: "/api/v1/apps/:a/environments/:b/hosts" },
  { method: "PUT", path: "/api/v1/apps/:a/environments/:b/lock", body: (v) => ({ reason: v }) },
  { method: "DELETE", path: "/api/v1/apps/:a/environments/:b/lock" },
  { method: "POST", path: "/api/v1/apps/:a/environments/:b/rollback", body: () => ({}) },
  { method: "POST", path: "/api/v1/apps/:a/environments/:b/reconcile", body: () => ({}) },
  { method: "POST", path: "/api/v1/apps/:a/environments/:b/switch", body: (v) => ({ slot: v }) },
  { method: "GET", path: "/api/v1/apps/:a/artifacts" },
  { method: "GET", path: "/api/v1/artifacts/:a" },
  { method: "GET", path: "/api/v1/artifacts/:a/manifest" },
  { method: "GET", path: "/api/v1/blobs/:a" },
  { method: "GET", path: "/api/v1/deploys/:a" },
  { method: "GET", path: "/api/v1/deploys/:a/log" },
  { method: "GET", path: "/api/v1/deploys/:a/hosts" },
  { method: "POST", path: "/api/v1/deploys/:a/cancel", body: () => ({}) },
  { method: "GET", path: "/api/v1/hosts/:a" },
  { method: "PUT", path: "/api/v1/hosts/:a/grant", body: (v) => ({ apps: [v], labels: [v, `role=${v}`] }) },
  { method: "DELETE", path: "/api/v1/tokens/:a" },
  {
    method: "POST",
    path: "/api/v1/tokens",
    body: (v) => ({ name: v, role: "agent", apps: [v], labels: [`${v}=x`, `k=${v}`] }),
  },
  { method: "GET", path: "/api/v1/deploys?cursor=:a&limit=:b" },
  { method: "GET", path: "/api/v1/deploys/:a/log?offset=:b" },
  { method: "GET", path: "/api/v1/audit?app=:a&env=:b&limit=:c" },
  { method: "GET", path: "/api/v1/deploys?app=:a&env=:b" },
  { method: "GET", path: "/api/v1/config?app=:a&env=:b" },
  { method: "GET", path: "/git/:a/info/refs?service=git-upload-pack" },
  { method: "GET", path: "/git/:a/:b/info/refs?service=git-receive-pack" },
  { method: "GET", path: "/:a" },
  { method: "GET", path: "/api/v1/:a/:b" },
];

/** How a value is put into the URL: as a client would encode it, raw (only what HTTP cannot carry encoded), or encoded twice. */
type Encoding = "encoded" | "raw" | "double";

function encode(value: string, encoding: Encoding): string {
  if (encoding === "encoded") return encodeURIComponent(value);
  if (encoding === "double") return encodeURIComponent(encodeURIComponent(value));
  // Raw: `/`, `..`, `%`, `;`… go as they are; what a request line cannot hold is percent-encoded.
  return value.replace(/[^\x21-\x7e]|[#?&]/gu, (c) => encodeURIComponent(c));
}

const segment = fc.oneof(
  { weight: 4, arbitrary: hostileString(markerDir) },
  { weight: 2, arbitrary: fc.constantFrom(...VALID_LOOKING, "shop", "staging", "production") },
  { weight: 1, arbitrary: longString },
  {
    weight: 1,
    arbitrary: fc.constantFrom(
      "..",
      ".",
      "%2e%2e",
      "%2F",
      "a%2Fb",
      "%",
      "%zz",
      "%00",
      "%c0%ae",
      "//",
      ";x",
      "a.git",
    ),
  },
);
const encoding = fc.constantFrom<Encoding>("encoded", "encoded", "raw", "double");

async function send(route: Route, target: string, value: string) {
  const body = route.body === undefined ? "" : JSON.stringify(route.body(value));
  const head = [
    `${route.method} ${target} HTTP/1.1`,
    "Host: 127.0.0.1",
    `Authorization: Bearer ${token}`,
    "Connection: close",
    ...(route.body === undefined ? [] : ["Content-Type: application/json"]),
    `Content-Length: ${Buffer.byteLength(body)}`,
  ];
  return rawRequest(t.url, `${head.join("\r\n")}\r\n\r\n${body}`);
}

describe("names in URLs (property)", () => {
  it("any name in any path or query: below 500, refusals in Turnout's format, nothing runs", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...ROUTES),
        segment,
        encoding,
        segment,
        encoding,
        segment,
        async (route, a, encodingA, b, encodingB, c) => {
          const target = route.path
            .replace(":a", encode(a, encodingA))
            .replace(":b", encode(b, encodingB))
            .replace(":c", encode(c, "encoded"));
          const response = await send(route, target, c);
          const what = `${route.method} ${target}`;
          expect(response.status, `${what}: ${response.body.slice(0, 300)}`).toBeLessThan(500);
          const api = target.startsWith("/api/");
          if (api) expectNoServerError(response.status, response.json, what);
          // A well-formed name of an app that does not exist: the caller hears "not found".
          if (route.path === "/api/v1/apps/:a" && encodingA === "encoded" && isValidName(a) && a !== "shop") {
            expect(response.status, what).toBe(404);
            expectErrorFormat(response.status, response.json, what);
          }
          expect(markers(markerDir)).toEqual([]);
        },
      ),
      runs(150),
    );
  });
});
