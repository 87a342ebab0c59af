// biome-ignore-all lint/suspicious/noExplicitAny: API responses are untyped JSON in these tests
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { lockEvent } from "../../src/domain/notification-event.js";
import { hmacSha256Header } from "../../src/http/webhooks/signatures.js";
import { startTurnout, type TestTurnout } from "../helpers/turnout.js";
import { newDeploy } from "../store/fixtures.js";

/**
 * A token limited to the app `mine` asks about `theirs` (an app that exists)
 * and about `ghost` (one that does not): on every app-scoped route the two
 * answers must be the same (status, code, and message and details up to the
 * name asked for), and every list must show only `mine`. The route table is
 * checked against the OpenAPI document, so a new route cannot be forgotten.
 */
let t: TestTurnout;
const tokens: Record<string, string> = {};
let theirDeploy: number;
let mineDeploy: number;
let theirDelivery: number;
const THEIR_DIGEST = "b".repeat(64);
const GHOST_DIGEST = "c".repeat(64);
const MINE_HOOK = "mine-hook-secret";
const THEIRS_HOOK = "theirs-hook-secret";

const appManifest = (team: string, secretEnv: string, repo: string) => `${repo}
webhook:
  secret_env: ${secretEnv}
environments:
  staging:
    branch: main
    deploy:
      provider: shell
      command: ["true"]
  web:
    branch: main
    deploy:
      provider: fleet
      hosts: { labels: { team: ${team} } }
      restart: ["true"]
`;

beforeAll(async () => {
  t = await startTurnout({ environment: { MINE_HOOK, THEIRS_HOOK } });
  await t.writeManifest("mine", appManifest("mine", "MINE_HOOK", 'repo: "{repo}"'));
  // Hosted, so that its git routes exist too.
  await t.writeManifest("theirs", appManifest("theirs", "THEIRS_HOOK", "hosted: true"));
  // Broken manifests: each is a problem of its own app.
  await t.writeManifest("mine-draft", "environments: [oops\n");
  await t.writeManifest("theirs-draft", "environments: [oops\n");
  expect([...t.engine.config().apps.keys()].sort()).toEqual(["mine", "shop", "theirs"]);

  const create = async (name: string, role: string, apps: string[] | null) =>
    (await t.store.tokens.create({ name, role: role as any, apps, createdBy: "test" })).token;
  tokens["admin"] = await create("mine-admin", "admin", ["mine", "mine-draft"]);
  tokens["viewer"] = await create("mine-viewer", "viewer", ["mine"]);
  await create("other-team", "deployer", ["theirs"]);

  // What exists of `theirs`: a deploy, an artifact, an audit event, hosts.
  const theirs = await t.store.deploys.create(newDeploy({ app: "theirs", env: "staging" }), () => ({
    ignoredSafeties: [],
  }));
  theirDeploy = theirs.id;
  await t.waitForDeploy(theirDeploy);
  const mine = await t.api("POST", "/api/v1/apps/mine/environments/staging/deploys", {});
  expect(mine.status).toBe(202);
  mineDeploy = mine.body.deploy.id;
  await t.waitForDeploy(mineDeploy);
  await t.store.artifacts.record({
    digest: THEIR_DIGEST,
    app: "theirs",
    fingerprint: null,
    files: 1,
    bytes: 1,
    source: "uploaded",
  });
  await t.store.audit.record({ actor: "test", action: "test", app: "theirs", env: null, details: {} });
  await t.store.audit.record({ actor: "test", action: "test", app: "mine", env: null, details: {} });
  const host = (name: string, labels: Record<string, string>) =>
    t.store.hosts.enrollAgent({
      name,
      labels,
      owner: "test",
      tokenHash: null,
      grant: { apps: null, labels: null },
    });
  // A notification delivery of `theirs` (fanned out here to a channel of the test's own).
  while ((await t.store.notify.list({ app: "theirs", limit: 1 })).length === 0) {
    await t.store.notify.record(
      lockEvent(
        {
          app: "theirs",
          env: "staging",
          lockedBy: "test",
          reason: "probe",
          createdAt: new Date().toISOString(),
        },
        "lock.locked",
        "test",
        new Date().toISOString(),
      ),
    );
    await t.store.notify.fanOut(100, (event) => (event.app === "theirs" ? ["probe"] : []));
  }
  theirDelivery = (await t.store.notify.list({ app: "theirs", limit: 1 }))[0]!.id;
  await host("host-mine", { team: "mine" });
  await host("host-theirs", { team: "theirs" });
  await host("host-idle", {});
  const shared = await host("host-shared", { team: "theirs" });
  await t.store.hosts.saveInventory(shared.id, [
    { app: "mine", releases: ["r1"], current: "r1", slots: {} },
    { app: "theirs", releases: ["r2"], current: "r2", slots: {} },
  ]);
}, 60_000);

afterAll(async () => {
  await t?.stop();
});

/** What may differ between the two answers: the name (or id, or digest) asked for. */
function normalized(res: { status: number; body: any }, asked: string[]): unknown {
  const walk = (value: unknown): unknown => {
    if (typeof value === "string") return asked.reduce((text, a) => text.split(a).join("<asked>"), value);
    if (typeof value === "number") return asked.includes(String(value)) ? "<asked>" : value;
    if (Array.isArray(value)) return value.map(walk);
    if (value && typeof value === "object") {
      return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, walk(v)]));
    }
    return value;
  };
  return { status: res.status, body: walk(res.body) };
}

interface Probe {
  /** The OpenAPI path it covers. */
  route: string;
  method: string;
  /** The URL for the thing of `theirs`, and for the thing that does not exist. */
  urls: [string, string];
  /** What tells them apart, normalized away before comparing. */
  asked: [string, string];
  body?: unknown;
  contentType?: string;
  /** The answer both must get (default: 404 E_NOT_FOUND). */
  expected?: { status: number; code?: string };
  /** …when the token's role lacks the route's permission, if that is checked first. */
  expectedForViewer?: { status: number; code?: string };
}

const env = (app: string, rest: string, envName = "staging") =>
  `/api/v1/apps/${app}/environments/${envName}${rest}`;
const pair = (f: (app: string) => string): [string, string] => [f("theirs"), f("ghost")];
const APPS: [string, string] = ["theirs", "ghost"];

function probes(): Probe[] {
  const ids: [string, string] = [String(theirDeploy), "999999"];
  const byId = (rest: string) =>
    [`/api/v1/deploys/${ids[0]}${rest}`, `/api/v1/deploys/${ids[1]}${rest}`] as [string, string];
  const byLabel = (rest: string) =>
    pair((app) => `/api/v1/deploys/${encodeURIComponent(`${app}/staging#1`)}${rest}`);
  const digests: [string, string] = [THEIR_DIGEST, GHOST_DIGEST];
  const list: Probe[] = [
    { route: "/api/v1/apps/{app}", method: "GET", urls: pair((a) => `/api/v1/apps/${a}`), asked: APPS },
    {
      route: "/api/v1/apps/{app}/environments/{env}",
      method: "GET",
      urls: pair((a) => env(a, "")),
      asked: APPS,
    },
    {
      route: "/api/v1/apps/{app}/environments/{env}/deploys",
      method: "POST",
      urls: pair((a) => env(a, "/deploys")),
      asked: APPS,
      body: {},
    },
    {
      route: "/api/v1/apps/{app}/environments/{env}/deploys/{number}",
      method: "GET",
      urls: pair((a) => env(a, "/deploys/1")),
      asked: APPS,
    },
    {
      route: "/api/v1/apps/{app}/environments/{env}/releases",
      method: "GET",
      urls: pair((a) => env(a, "/releases")),
      asked: APPS,
    },
    {
      route: "/api/v1/apps/{app}/environments/{env}/pending",
      method: "GET",
      urls: pair((a) => env(a, "/pending")),
      asked: APPS,
    },
    {
      route: "/api/v1/apps/{app}/environments/{env}/rollback",
      method: "POST",
      urls: pair((a) => env(a, "/rollback")),
      asked: APPS,
      body: {},
    },
    // Promotion and release pipelines.
    {
      route: "/api/v1/apps/{app}/environments/{env}/promote",
      method: "POST",
      urls: pair((a) => env(a, "/promote", "web")),
      asked: APPS,
      body: { from: "staging" },
    },
    {
      route: "/api/v1/apps/{app}/pipeline",
      method: "GET",
      urls: pair((a) => `/api/v1/apps/${a}/pipeline`),
      asked: APPS,
    },
    {
      route: "/api/v1/apps/{app}/pipeline/approve",
      method: "POST",
      urls: pair((a) => `/api/v1/apps/${a}/pipeline/approve`),
      asked: APPS,
      body: { stage: "web" },
    },
    {
      route: "/api/v1/apps/{app}/pipeline/reject",
      method: "POST",
      urls: pair((a) => `/api/v1/apps/${a}/pipeline/reject`),
      asked: APPS,
      body: { stage: "web" },
    },
    {
      route: "/api/v1/apps/{app}/environments/{env}/lock",
      method: "PUT",
      urls: pair((a) => env(a, "/lock")),
      asked: APPS,
      body: { reason: "probing" },
    },
    {
      route: "/api/v1/apps/{app}/environments/{env}/lock",
      method: "DELETE",
      urls: pair((a) => env(a, "/lock")),
      asked: APPS,
    },
    {
      route: "/api/v1/apps/{app}/environments/{env}/hosts",
      method: "GET",
      urls: pair((a) => env(a, "/hosts", "web")),
      asked: APPS,
    },
    {
      route: "/api/v1/apps/{app}/environments/{env}/reconcile",
      method: "POST",
      urls: pair((a) => env(a, "/reconcile", "web")),
      asked: APPS,
    },
    {
      route: "/api/v1/apps/{app}/environments/{env}/switch",
      method: "POST",
      urls: pair((a) => env(a, "/switch", "web")),
      asked: APPS,
      body: { slot: "blue" },
    },
    // What the web dashboard reads.
    {
      route: "/api/v1/apps/{app}/environments/{env}/stats",
      method: "GET",
      urls: pair((a) => env(a, "/stats")),
      asked: APPS,
    },
    {
      route: "/api/v1/apps/{app}/environments/{env}/deploy-readiness",
      method: "GET",
      urls: pair((a) => env(a, "/deploy-readiness")),
      asked: APPS,
    },
    {
      route: "/api/v1/apps/{app}/environments/{env}/rollback-preview",
      method: "GET",
      urls: pair((a) => env(a, "/rollback-preview")),
      asked: APPS,
    },
    // Notification deliveries.
    {
      route: "/api/v1/apps/{app}/deliveries",
      method: "GET",
      urls: pair((a) => `/api/v1/apps/${a}/deliveries`),
      asked: APPS,
    },
    {
      route: "/api/v1/deliveries/{id}",
      method: "GET",
      urls: [`/api/v1/deliveries/${theirDelivery}`, "/api/v1/deliveries/999999"],
      asked: [String(theirDelivery), "999999"],
    },
    {
      route: "/api/v1/hosts/{name}/history",
      method: "GET",
      urls: ["/api/v1/hosts/host-theirs/history", "/api/v1/hosts/no-such-host/history"],
      asked: ["host-theirs", "no-such-host"],
    },
    {
      route: "/api/v1/apps/{app}/artifacts",
      method: "POST",
      urls: pair((a) => `/api/v1/apps/${a}/artifacts`),
      asked: APPS,
      body: Buffer.alloc(1024),
      contentType: "application/x-tar",
    },
    {
      route: "/api/v1/apps/{app}/artifacts",
      method: "GET",
      urls: pair((a) => `/api/v1/apps/${a}/artifacts`),
      asked: APPS,
    },
    {
      route: "/api/v1/apps/{app}/commit-locks",
      method: "GET",
      urls: pair((a) => `/api/v1/apps/${a}/commit-locks`),
      asked: APPS,
    },
    {
      route: "/api/v1/apps/{app}/commit-locks",
      method: "POST",
      urls: pair((a) => `/api/v1/apps/${a}/commit-locks`),
      asked: APPS,
      body: { sha: "abcdef12", reason: "bad merge" },
    },
    {
      route: "/api/v1/apps/{app}/commit-locks/{sha}",
      method: "DELETE",
      urls: pair((a) => `/api/v1/apps/${a}/commit-locks/abcdef12`),
      asked: APPS,
    },
    { route: "/api/v1/deploys/{id}", method: "GET", urls: byId(""), asked: ids },
    { route: "/api/v1/deploys/{id}", method: "GET", urls: byLabel(""), asked: APPS },
    { route: "/api/v1/deploys/{id}/log", method: "GET", urls: byId("/log"), asked: ids },
    { route: "/api/v1/deploys/{id}/log", method: "GET", urls: byLabel("/log"), asked: APPS },
    { route: "/api/v1/deploys/{id}/cancel", method: "POST", urls: byId("/cancel"), asked: ids },
    { route: "/api/v1/deploys/{id}/cancel", method: "POST", urls: byLabel("/cancel"), asked: APPS },
    { route: "/api/v1/deploys/{id}/hosts", method: "GET", urls: byId("/hosts"), asked: ids },
    { route: "/api/v1/deploys/{id}/approve", method: "POST", urls: byId("/approve"), asked: ids },
    { route: "/api/v1/deploys/{id}/abort", method: "POST", urls: byId("/abort"), asked: ids },
    {
      route: "/api/v1/artifacts/{digest}",
      method: "GET",
      urls: [`/api/v1/artifacts/${digests[0]}`, `/api/v1/artifacts/${digests[1]}`],
      asked: digests,
    },
    {
      route: "/api/v1/artifacts/{digest}/manifest",
      method: "GET",
      urls: [`/api/v1/artifacts/${digests[0]}/manifest`, `/api/v1/artifacts/${digests[1]}/manifest`],
      asked: digests,
      // Agents only: a digest is not looked up for anyone else.
      expectedForViewer: { status: 403, code: "E_FORBIDDEN" },
    },
    {
      route: "/api/v1/hosts/{name}",
      method: "GET",
      urls: ["/api/v1/hosts/host-theirs", "/api/v1/hosts/no-such-host"],
      asked: ["host-theirs", "no-such-host"],
    },
    {
      // Not app-scoped: a limited token may not manage tokens at all, whichever it names.
      route: "/api/v1/tokens/{name}",
      method: "DELETE",
      urls: ["/api/v1/tokens/other-team", "/api/v1/tokens/no-such-token"],
      asked: ["other-team", "no-such-token"],
      expected: { status: 403, code: "E_FORBIDDEN" },
    },
    {
      // Filters: another app's name finds nothing, as a name that was never used.
      route: "/api/v1/deploys",
      method: "GET",
      urls: pair((a) => `/api/v1/deploys?app=${a}`),
      asked: APPS,
      expected: { status: 200 },
    },
    {
      route: "/api/v1/audit",
      method: "GET",
      urls: pair((a) => `/api/v1/audit?app=${a}`),
      asked: APPS,
      expected: { status: 200 },
    },
  ];
  return list;
}

/** Routes that name no app, deploy, artifact or host of an app, and why. */
const NOT_APP_SCOPED = new Set([
  "/healthz",
  // The bundled agent: the package's own file, the same for everyone (no token needed).
  "/turnout-agent.cjs",
  // Server-wide; a token limited to some apps gets 403 (tested below).
  "/metrics",
  "/api/v1/apps",
  "/api/v1/deploys",
  "/api/v1/tokens",
  "/api/v1/config",
  "/api/v1/audit",
  "/api/v1/hosts",
  // Garbage collection is server-wide, for an admin of every app only (403 for a limited token).
  "/api/v1/gc",
  // Changing a grant is for an admin of every app only: a limited token gets 403 whatever the host.
  "/api/v1/hosts/{name}/grant",
  // The caller itself, its sign-in codes, and lists filtered like /apps (tested below).
  "/api/v1/me",
  "/api/v1/me/session",
  "/api/v1/login-codes",
  "/api/v1/login-codes/exchange",
  "/api/v1/overview",
  "/api/v1/events",
  // Content-addressed blobs belong to no app (host grants decide what a host may read).
  "/api/v1/blobs/{sha256}",
  "/api/v1/blobs/batch",
  // Authenticated by webhook secrets: probed below.
  "/api/v1/webhooks/github",
  "/api/v1/webhooks/gitlab",
  "/api/v1/webhooks/generic",
  // Authenticated by Slack's signature; the mapped user's apps limit what it does (test/http/slack-commands.test.ts).
  "/api/v1/integrations/slack/commands",
]);

async function call(probe: Probe, url: string, token: string) {
  const body =
    probe.body === undefined
      ? undefined
      : Buffer.isBuffer(probe.body)
        ? probe.body
        : JSON.stringify(probe.body);
  const response = await fetch(t.url + url, {
    method: probe.method,
    headers: {
      authorization: `Bearer ${token}`,
      ...(body !== undefined ? { "content-type": probe.contentType ?? "application/json" } : {}),
    },
    ...(body !== undefined ? { body } : {}),
  });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : undefined };
}

describe("a token limited to one app cannot tell another app from a missing one", () => {
  it("the probe table covers every app-scoped route of the OpenAPI document", async () => {
    const doc = (await (await fetch(`${t.url}/api/v1/openapi.json`)).json()) as any;
    const covered = new Set(probes().map((p) => `${p.method} ${p.route}`));
    const missing: string[] = [];
    for (const [route, operations] of Object.entries(doc.paths as Record<string, object>)) {
      if (NOT_APP_SCOPED.has(route)) continue;
      for (const method of Object.keys(operations)) {
        const key = `${method.toUpperCase()} ${route}`;
        if (!covered.has(key)) missing.push(key);
      }
    }
    expect(missing).toEqual([]);
  });

  for (const role of ["admin", "viewer"] as const) {
    it(`every app-scoped route answers the same for theirs and ghost (${role} token)`, async () => {
      const answers: Record<string, unknown> = {};
      for (const probe of probes()) {
        const label = `${probe.method} ${probe.urls[0]}`;
        const theirs = await call(probe, probe.urls[0], tokens[role]!);
        const ghost = await call(probe, probe.urls[1], tokens[role]!);
        answers[label] = normalized(theirs, [probe.asked[0]]);
        expect(answers[label], label).toEqual(normalized(ghost, [probe.asked[1]]));
        const expected = (role === "viewer" ? probe.expectedForViewer : undefined) ??
          probe.expected ?? { status: 404, code: "E_NOT_FOUND" };
        if (expected.status === 200) {
          expect(theirs.status, label).toBe(200);
          expect(Object.values(theirs.body)[0], label).toEqual([]);
        } else {
          expect({ status: theirs.status, code: theirs.body?.error?.code }, label).toEqual(expected);
        }
      }
      // Nothing of theirs was touched by the probes.
      expect(await t.store.locks.get("theirs", "staging")).toBeUndefined();
      expect((await t.store.deploys.list({ app: "theirs", limit: 10 })).map((d) => d.id)).toEqual([
        theirDeploy,
      ]);
    });
  }

  it("the role is still checked on the token's own app (403), after visibility", async () => {
    const res = await t.api("POST", env("mine", "/deploys"), {}, tokens["viewer"]);
    expect(res).toMatchObject({ status: 403, body: { error: { code: "E_FORBIDDEN" } } });
  });

  it("hosted repositories: the refusal git shows is the one for a missing app", async () => {
    const refs = async (app: string) => {
      const res = await fetch(`${t.url}/git/${app}.git/info/refs?service=git-upload-pack`, {
        headers: { authorization: `Bearer ${tokens["admin"]}` },
      });
      // The pkt-line lengths differ with the name's length: compare the lines.
      const text = (await res.text()).replace(/[0-9a-f]{4}(?=ERR|#)/g, "");
      return { status: res.status, text: text.split(app).join("<asked>") };
    };
    const theirs = await refs("theirs");
    expect(theirs).toEqual(await refs("ghost"));
    expect(theirs.text).toContain("no app named '<asked>'");
    const push = async (app: string) => {
      const res = await fetch(`${t.url}/git/${app}.git/git-receive-pack`, {
        method: "POST",
        headers: {
          authorization: `Bearer ${tokens["admin"]}`,
          "content-type": "application/x-git-receive-pack-request",
        },
        body: "0000",
      });
      return { status: res.status, text: (await res.text()).split(app).join("<asked>") };
    };
    expect(await push("theirs")).toEqual(await push("ghost"));
  });
});

describe("webhooks cannot probe app names either", () => {
  const generic = async (query: string) => {
    const body = JSON.stringify({ hello: "world" });
    const res = await fetch(`${t.url}/api/v1/webhooks/generic${query}`, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        "x-turnout-signature": hmacSha256Header("a guess", body),
        "x-turnout-delivery": `d-${Math.random()}`,
      },
      body,
    });
    return { status: res.status, body: await res.json() };
  };

  it("an existing app with a secret, one without a secret and a missing one get the same 401", async () => {
    const theirs = normalized(await generic("?app=theirs"), ["theirs"]);
    // `shop` (the default manifest) has no webhook secret.
    expect(normalized(await generic("?app=shop"), ["shop"])).toEqual(theirs);
    expect(normalized(await generic("?app=ghost"), ["ghost"])).toEqual(theirs);
    expect(theirs).toMatchObject({ status: 401, body: { error: { code: "E_UNAUTHORIZED" } } });
  });

  it("GitHub: a repository no app tracks is refused like a wrong signature", async () => {
    const github = async (fullName: string) => {
      const body = JSON.stringify({ ref: "refs/heads/main", repository: { full_name: fullName } });
      const res = await fetch(`${t.url}/api/v1/webhooks/github`, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          "x-github-event": "push",
          "x-github-delivery": `d-${Math.random()}`,
          "x-hub-signature-256": hmacSha256Header("a guess", body),
        },
        body,
      });
      return { status: res.status, body: await res.json() };
    };
    const untracked = await github("acme/nothing-here");
    expect(untracked).toMatchObject({ status: 401, body: { error: { code: "E_UNAUTHORIZED" } } });
    const named = await fetch(`${t.url}/api/v1/webhooks/github?app=ghost`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-github-event": "push", "x-github-delivery": "x" },
      body: "{}",
    });
    // Without a signature: the missing header is said before anything is looked up.
    expect(((await named.json()) as any).error.message).toBe("missing X-Hub-Signature-256 header");
  });
});

describe("lists show only the token's apps", () => {
  it("apps, and their configuration problems", async () => {
    const res = await t.api("GET", "/api/v1/apps", undefined, tokens["admin"]);
    expect(res.body.apps.map((a: any) => a.name)).toEqual(["mine"]);
    expect(res.body.problems.length).toBeGreaterThan(0);
    expect(res.body.problems.every((p: any) => /mine-draft\.yaml$/.test(p.file))).toBe(true);
    const all = await t.api("GET", "/api/v1/apps");
    expect(all.body.problems.some((p: any) => /theirs-draft\.yaml$/.test(p.file))).toBe(true);
  });

  it("the dashboard's overview, and its live change events", async () => {
    const res = await t.api("GET", "/api/v1/overview", undefined, tokens["admin"]);
    expect(res.body.apps.map((a: any) => a.name)).toEqual(["mine"]);
    expect(res.body.problems.every((p: any) => /mine-draft\.yaml$/.test(p.file))).toBe(true);
    expect(JSON.stringify(res.body)).not.toContain("theirs");
    // A change of theirs is not told; one of mine is.
    const controller = new AbortController();
    const response = await fetch(`${t.url}/api/v1/events`, {
      headers: { authorization: `Bearer ${tokens["admin"]}`, accept: "text/event-stream" },
      signal: controller.signal,
    });
    const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
    let seen = "";
    while (!seen.includes("event: ready")) seen += (await reader.read()).value ?? "";
    await t.api("PUT", env("theirs", "/lock"), { reason: "theirs only" });
    await t.api("PUT", env("mine", "/lock"), { reason: "mine" });
    while (!seen.includes('"app":"mine"')) seen += (await reader.read()).value ?? "";
    controller.abort();
    expect(seen).not.toContain("theirs");
    await t.api("DELETE", env("theirs", "/lock"));
    await t.api("DELETE", env("mine", "/lock"));
  });

  it("configuration status", async () => {
    const res = await t.api("GET", "/api/v1/config", undefined, tokens["admin"]);
    expect(res.status).toBe(200);
    expect(res.body.problems.length).toBeGreaterThan(0);
    expect(res.body.problems.every((p: any) => /mine-draft\.yaml$/.test(p.file))).toBe(true);
    expect(JSON.stringify(res.body)).not.toContain("theirs");
    // The viewer's list has neither draft: mine-draft is not among its apps.
    const viewer = await t.api("GET", "/api/v1/config", undefined, tokens["viewer"]);
    expect(viewer.body.problems).toEqual([]);
  });

  it("deploys, without and with filters", async () => {
    const res = await t.api("GET", "/api/v1/deploys", undefined, tokens["viewer"]);
    expect(res.body.deploys.map((d: any) => d.id)).toEqual([mineDeploy]);
    const byStatus = await t.api("GET", "/api/v1/deploys?status=failed", undefined, tokens["viewer"]);
    expect(byStatus.body.deploys).toEqual([]);
  });

  it("audit events, without and with filters, paged", async () => {
    const res = await t.api("GET", "/api/v1/audit", undefined, tokens["viewer"]);
    expect(res.body.events.length).toBeGreaterThan(0);
    expect(res.body.events.every((e: any) => e.app === "mine")).toBe(true);
    // Their deploy is in the trail, and no filter brings it (or a server-wide event) out.
    const all = (await t.api("GET", "/api/v1/audit?limit=500")).body.events;
    expect(all.some((e: any) => e.action === "deploy" && e.app === "theirs")).toBe(true);
    for (const query of ["action=deploy", "source=api", "actor=admin", "action=token.create", "limit=1"]) {
      const filtered = await t.api("GET", `/api/v1/audit?${query}`, undefined, tokens["viewer"]);
      expect(filtered.status, query).toBe(200);
      expect(
        filtered.body.events.every((e: any) => e.app === "mine"),
        query,
      ).toBe(true);
    }
    expect(
      (await t.api("GET", "/api/v1/audit?action=deploy", undefined, tokens["viewer"])).body.events.map(
        (e: any) => e.target,
      ),
    ).toEqual(["mine/staging#1"]);
    // Pages of one: every page is theirs-free, and the pages together are all of mine.
    const seen: number[] = [];
    let cursor: string | null = null;
    do {
      const page: any = await t.api(
        "GET",
        `/api/v1/audit?limit=1${cursor ? `&cursor=${cursor}` : ""}`,
        undefined,
        tokens["viewer"],
      );
      seen.push(...page.body.events.map((e: any) => e.id));
      cursor = page.body.nextCursor;
    } while (cursor);
    expect(seen).toEqual(res.body.events.map((e: any) => e.id));
  });

  it("metrics: only for tokens of every app (they name every app)", async () => {
    const limited = await t.api("GET", "/metrics", undefined, tokens["viewer"]);
    expect(limited.status).toBe(403);
    expect(limited.body.error.code).toBe("E_FORBIDDEN");
    expect(JSON.stringify(limited.body)).not.toContain("theirs");
  });

  it("hosts: only those serving the token's apps, with only their inventory", async () => {
    const res = await t.api("GET", "/api/v1/hosts", undefined, tokens["viewer"]);
    expect(res.body.hosts.map((h: any) => h.name)).toEqual(["host-mine", "host-shared"]);
    const shared = res.body.hosts.find((h: any) => h.name === "host-shared");
    expect(shared.apps.map((a: any) => a.app)).toEqual(["mine"]);
    const one = await t.api("GET", "/api/v1/hosts/host-shared", undefined, tokens["viewer"]);
    expect(one.body.host.apps.map((a: any) => a.app)).toEqual(["mine"]);
    // An unlimited token sees every host and everything on it.
    const all = await t.api("GET", "/api/v1/hosts");
    expect(all.body.hosts.map((h: any) => h.name)).toEqual([
      "host-idle",
      "host-mine",
      "host-shared",
      "host-theirs",
    ]);
  });

  it("artifacts and tokens", async () => {
    const artifacts = await t.api("GET", "/api/v1/apps/mine/artifacts", undefined, tokens["viewer"]);
    expect(artifacts).toMatchObject({ status: 200, body: { artifacts: [] } });
    const list = await t.api("GET", "/api/v1/tokens", undefined, tokens["admin"]);
    expect(list).toMatchObject({ status: 403, body: { error: { code: "E_FORBIDDEN" } } });
  });
});
