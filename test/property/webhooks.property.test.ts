import { randomUUID } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it, type MockInstance, vi } from "vitest";
import { githubRepository, gitlabRepository } from "../../src/http/webhooks/payload.js";
import { hmacSha256Header } from "../../src/http/webhooks/signatures.js";
import { startTurnout, type TestTurnout } from "../helpers/turnout.js";
import { until } from "../helpers/wait.js";
import { hostileString, markers } from "./hostile-input.js";
import { expectNoServerError } from "./http-assertions.js";
import { runs } from "./property-runs.js";

/**
 * Random bodies, headers and signatures on the GitHub, GitLab and generic
 * webhook routes of a real server, whose origin has a commit the server has
 * not fetched yet (so any fetch a hook causes ends in an auto-deploy):
 *
 * - unsigned or badly signed: never accepted, never a 5xx; the uniform 401
 *   whenever the request names its target (an app, or a repository), worded
 *   the same whether or not that app exists; nothing fetched, nothing
 *   recorded, nothing deployed;
 * - correctly signed, with random JSON and random headers: 2xx or a refusal
 *   in Turnout's format, never a 5xx; only a push makes Turnout fetch;
 * - whatever a payload claims (refs, SHAs), what gets deployed is the tracked
 *   branch's real head, once.
 */
const SECRET = "s3cret-shop-hook";
const OTHER_SECRET = "s3cret-site-hook";
const MANIFEST = `repo: "{repo}"
webhook:
  secret_env: SHOP_HOOK
github:
  repository: acme/shop
environments:
  staging:
    branch: main
    auto_deploy: true
    deploy:
      provider: shell
      command: [cat, VERSION]
`;

const markerDir = mkdtempSync(path.join(tmpdir(), "turnout-prop-webhooks-"));
let t: TestTurnout;
let pokes: MockInstance<TestTurnout["engine"]["poke"]>;
let head: string;

beforeAll(async () => {
  t = await startTurnout({
    manifest: MANIFEST,
    environment: { SHOP_HOOK: SECRET, SITE_HOOK: OTHER_SECRET },
  });
  await t.writeManifest(
    "site",
    `repo: "https://github.com/acme/site.git"\npoll_interval: 1h\nwebhook:\n  secret_env: SITE_HOOK\nenvironments:\n  production:\n    deploy: { provider: shell, command: ["true"] }\n`,
  );
  // Seen at start (the first release's commit); then a commit the server has not fetched.
  head = await t.repo.commit({ VERSION: "2.0.0\n" }, "not fetched yet");
  // Calls through: the real fetch and auto-deploy happen; the spy only counts.
  pokes = vi.spyOn(t.engine, "poke");
}, 120_000);

afterAll(async () => {
  await t?.stop();
  rmSync(markerDir, { recursive: true, force: true });
});

type Route = "github" | "gitlab" | "generic";
const hostile = hostileString(markerDir);
/** A header value fetch() will send: printable Latin-1, as any sender's header is. */
const headerValue = hostile.map((v) => v.replace(/[^\x20-\x7e\x80-\xff]/g, "").trim());
const json = fc.jsonValue({ maxDepth: 3 });
/** Random JSON, sometimes naming a repository the way GitHub or GitLab do. */
const payload = fc.oneof(
  json,
  fc.record({ repository: fc.record({ full_name: fc.constantFrom("acme/shop", "acme/site", "acme/none") }) }),
  fc.record({
    ref: fc.oneof(fc.constantFrom("refs/heads/main", "refs/heads/other", "refs/tags/v9"), hostile),
    after: fc.oneof(fc.constant("f".repeat(40)), hostile),
    repository: fc.record({ full_name: fc.constant("acme/shop") }),
    project: fc.record({ git_http_url: fc.constant("/nonexistent/shop.git") }),
  }),
);
const query = fc.option(fc.oneof(fc.constantFrom("shop", "site", "nope", "a".repeat(63)), hostile), {
  nil: undefined,
});

function url(route: Route, app: string | undefined): string {
  return `${t.url}/api/v1/webhooks/${route}${app === undefined ? "" : `?app=${encodeURIComponent(app)}`}`;
}

async function send(route: Route, app: string | undefined, body: string, headers: Record<string, string>) {
  const response = await fetch(url(route, app), { method: "POST", headers, body });
  const text = await response.text();
  let parsed: any;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = text;
  }
  return { status: response.status, body: parsed };
}

/**
 * Whether the request names its target: a valid ?app=, or a JSON body naming
 * a repository the way its sender does (GitHub: full name or URLs; GitLab: URLs).
 */
function namesTarget(route: Route, app: string | undefined, body: unknown): boolean {
  if (app !== undefined) return /^[a-z0-9][a-z0-9-]{0,62}$/.test(app);
  if (route === "generic") return false;
  const identity = route === "github" ? githubRepository(body) : gitlabRepository(body);
  return identity.fullName !== undefined || identity.urls.length > 0;
}

async function deploys() {
  return t.store.deploys.list({ limit: 100 });
}

/** Deploys of the commit the server had not fetched: only a fetch can lead to one. */
async function deploysOfHead() {
  return (await deploys()).filter((d) => d.sha === head);
}

describe("webhooks (property)", () => {
  it("unsigned or badly signed: never accepted, the uniform 401 when a target is named, nothing happens", async () => {
    const signature = fc.oneof(
      fc.constant(undefined),
      headerValue,
      fc.stringMatching(/^[0-9a-f]{64}$/).map((hex) => `sha256=${hex}`),
      // Signed, but with another app's secret or over other bytes.
      fc.constant("other-secret"),
      fc.constant("other-body"),
    );
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom<Route>("github", "gitlab", "generic"),
        query,
        payload,
        signature,
        fc.constantFrom("application/json", "application/x-www-form-urlencoded"),
        headerValue,
        async (route, app, value, how, contentType, event) => {
          const body =
            contentType === "application/json" ? JSON.stringify(value) : `payload=${JSON.stringify(value)}`;
          const headers: Record<string, string> = {
            "content-type": contentType,
            "x-github-event": event || "push",
            "x-github-delivery": randomUUID(),
            "x-gitlab-event": "Push Hook",
            "x-turnout-delivery": randomUUID(),
          };
          const presented =
            how === "other-secret"
              ? hmacSha256Header(OTHER_SECRET, body)
              : how === "other-body"
                ? hmacSha256Header(SECRET, `${body} `)
                : how;
          if (presented !== undefined) {
            if (route === "gitlab")
              headers["x-gitlab-token"] = how === "other-secret" ? OTHER_SECRET : presented;
            else headers[route === "github" ? "x-hub-signature-256" : "x-turnout-signature"] = presented;
          }
          // `site` is signed with its own secret when "other-secret" is used: that request is genuine for site.
          fc.pre(!(how === "other-secret" && (app === "site" || (app === undefined && route !== "generic"))));
          const answer = await send(route, app, body, headers);
          const what = `${route} ?app=${app} ${body.slice(0, 120)}`;
          expectNoServerError(answer.status, answer.body, what);
          expect(answer.status, what).toBeGreaterThanOrEqual(400);
          if (namesTarget(route, app, value)) {
            expect(answer.status, what).toBe(401);
            expect(answer.body.error.code).toBe("E_UNAUTHORIZED");
            if (app !== undefined) {
              // The same words whether the app exists or not.
              const header = {
                github: "X-Hub-Signature-256",
                gitlab: "X-Gitlab-Token",
                generic: "X-Turnout-Signature",
              }[route];
              expect([`${header} does not verify for app '${app}'`, `missing ${header} header`]).toContain(
                answer.body.error.message,
              );
            }
          }
          expect(pokes).not.toHaveBeenCalled();
          expect(markers(markerDir)).toEqual([]);
        },
      ),
      { ...runs(50), maxSkipsPerRun: 100 },
    );
    expect(await deploysOfHead()).toEqual([]);
    expect(
      (await t.store.audit.list({ app: "shop", limit: 10 })).filter((e) => e.action === "webhook"),
    ).toEqual([]);
  });

  it("correctly signed random JSON and headers: 2xx or a refusal, never a 5xx; only a push fetches", async () => {
    const event = fc.oneof(
      fc.constantFrom("push", "ping", "Push Hook", "Tag Push Hook", "Merge Request Hook", "issues"),
      headerValue,
    );
    const delivery = fc.oneof(fc.uuid(), headerValue);
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom<Route>("github", "gitlab", "generic"),
        fc.constantFrom<string | undefined>("shop", undefined),
        payload,
        event,
        delivery,
        async (route, app, value, eventName, id) => {
          const body = JSON.stringify(value);
          const headers: Record<string, string> = { "content-type": "application/json" };
          if (route === "github") {
            headers["x-hub-signature-256"] = hmacSha256Header(SECRET, body);
            headers["x-github-event"] = eventName;
            headers["x-github-delivery"] = id;
          } else if (route === "gitlab") {
            headers["x-gitlab-token"] = SECRET;
            headers["x-gitlab-event"] = eventName;
            headers["x-gitlab-event-uuid"] = id;
          } else {
            headers["x-turnout-signature"] = hmacSha256Header(SECRET, body);
            headers["x-turnout-delivery"] = id;
          }
          const before = pokes.mock.calls.length;
          const answer = await send(route, route === "generic" ? "shop" : app, body, headers);
          const what = `${route} ${eventName} ${body.slice(0, 120)}`;
          expectNoServerError(answer.status, answer.body, what);
          const poked = pokes.mock.calls.length > before;
          if (poked) {
            // Only a push (or a generic hook) moves Turnout, and only for the app it verified for.
            expect(answer.status, what).toBe(202);
            expect(
              route === "generic" || ["push", "Push Hook", "Tag Push Hook"].includes(eventName),
              what,
            ).toBe(true);
            expect(pokes.mock.calls.slice(before).map(([name]) => name)).toEqual(["shop"]);
          }
          expect(markers(markerDir)).toEqual([]);
        },
      ),
      runs(50),
    );
  });

  it("a signed push deploys the tracked branch's real head, once, whatever the payloads claimed", async () => {
    const body = JSON.stringify({
      ref: "refs/heads/main",
      after: "0".repeat(40),
      repository: { full_name: "acme/shop" },
    });
    const answer = await send("github", undefined, body, {
      "content-type": "application/json",
      "x-hub-signature-256": hmacSha256Header(SECRET, body),
      "x-github-event": "push",
      "x-github-delivery": randomUUID(),
    });
    expect(answer.status).toBe(202);
    await until(async () => (await deploysOfHead()).length > 0, 30_000, "a deploy of the pushed head");
    for (const deploy of await deploys()) await t.waitForDeploy(deploy.id, 60_000);
    const ofHead = await deploysOfHead();
    expect(ofHead.map((d) => [d.app, d.env, d.status])).toEqual([["shop", "staging", "succeeded"]]);
    // Nothing but the branch's real commits: no SHA a payload named was ever deployed.
    const commits = new Set((await t.repo.git("rev-list", "main")).split("\n"));
    for (const deploy of await deploys()) expect(commits.has(deploy.sha), deploy.sha).toBe(true);
    expect(markers(markerDir)).toEqual([]);
  });
});
