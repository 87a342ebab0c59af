// biome-ignore-all lint/suspicious/noExplicitAny: API responses are untyped JSON in these tests
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, beforeEach, describe, expect, it, type MockInstance, vi } from "vitest";
import { deliveryKey } from "../../src/http/webhooks/deliver.js";
import { hmacSha256Header } from "../../src/http/webhooks/signatures.js";
import { DEFAULT_MANIFEST, startTurnout, type TestTurnout } from "../helpers/turnout.js";
import {
  genericHeaders,
  githubPushPayload,
  githubRequest,
  gitlabHeaders,
  gitlabPushPayload,
  hookManifest,
  post,
} from "./webhooks-helpers.js";

/**
 * Webhooks against the real server and store. The engine's poke is the
 * boundary these routes call; it is spied on (and stubbed) so the tests see
 * exactly which apps a hook made Turnout fetch, whatever poke does.
 */
const SECRETS = {
  SHOP_HOOK: "s3cret-shop",
  SITE_HOOK: "s3cret-site",
  MIRROR_HOOK: "s3cret-mirror",
  LAB_HOOK: "s3cret-lab",
};

let t: TestTurnout;
let pokes: MockInstance<TestTurnout["engine"]["poke"]>;

beforeAll(async () => {
  t = await startTurnout({
    manifest: `${DEFAULT_MANIFEST}webhook:\n  secret_env: SHOP_HOOK\n`,
    environment: SECRETS,
  });
  // `site` and `site-twin` share a repository and a secret; `site-mirror` the repository only.
  await t.writeManifest("site", hookManifest("git@github.com:Acme/Site.git", "SITE_HOOK"));
  await t.writeManifest("site-twin", hookManifest("https://github.com/acme/site", "SITE_HOOK"));
  await t.writeManifest("site-mirror", hookManifest("ssh://git@github.com/acme/site.git", "MIRROR_HOOK"));
  await t.writeManifest("lab", hookManifest("ssh://git@gitlab.example.test:2222/group/lab.git", "LAB_HOOK"));
  await t.writeManifest("plain", hookManifest("https://git.example.test/o/plain.git"));
  const apps = [...t.engine.config().apps.keys()].sort();
  expect(apps).toEqual(["lab", "plain", "shop", "site", "site-mirror", "site-twin"]);
  pokes = vi.spyOn(t.engine, "poke").mockResolvedValue(undefined);
});

afterAll(async () => {
  await t?.stop();
});

beforeEach(() => {
  pokes.mockReset();
  pokes.mockResolvedValue(undefined);
});

const github = (query = "") => `${t.url}/api/v1/webhooks/github${query}`;
const gitlab = (query = "") => `${t.url}/api/v1/webhooks/gitlab${query}`;
const generic = (query = "") => `${t.url}/api/v1/webhooks/generic${query}`;

const SITE_REPOSITORY = {
  full_name: "acme/site",
  clone_url: "https://github.com/acme/site.git",
  ssh_url: "git@github.com:acme/site.git",
  git_url: "git://github.com/acme/site.git",
  html_url: "https://github.com/acme/site",
};

function pokedApps(): string[] {
  return pokes.mock.calls.map(([app, source]) => {
    expect(source).toBe("webhook");
    return app;
  });
}

/** True when the delivery was never recorded for the app (recording it now, with an id no test reuses). */
async function neverRecorded(provider: string, app: string, delivery: string): Promise<boolean> {
  return t.store.webhooks.recordDelivery(provider, deliveryKey(app, delivery), app);
}

async function webhookAudit(app: string): Promise<any[]> {
  return (await t.store.audit.list({ app, limit: 500 })).filter((e) => e.action === "webhook");
}

function expectError(res: { status: number; body: any; text: string }, status: number, code: string): void {
  expect({ status: res.status, code: res.body?.error?.code }).toEqual({ status, code });
  for (const secret of Object.values(SECRETS)) expect(res.text).not.toContain(secret);
}

describe("GitHub", () => {
  it("a signed push (JSON) is accepted at once and makes Turnout fetch the app", async () => {
    const req = githubRequest(githubPushPayload(SITE_REPOSITORY), { secret: SECRETS.SHOP_HOOK });
    const res = await post(github("?app=shop"), req.body, req.headers);
    expect(res).toMatchObject({ status: 202, body: { accepted: ["shop"] } });
    expect(pokedApps()).toEqual(["shop"]);
    expect(await neverRecorded("github", "shop", req.delivery)).toBe(false);
    const audit = (await webhookAudit("shop")).find((e) => e.details.delivery === req.delivery);
    expect(audit).toMatchObject({
      actor: "webhook:github",
      app: "shop",
      details: { provider: "github", event: "push", apps: ["shop"], ref: "refs/heads/main" },
    });
  });

  it("a signed push (form-encoded) is accepted the same way", async () => {
    const req = githubRequest(githubPushPayload(SITE_REPOSITORY), {
      secret: SECRETS.SHOP_HOOK,
      contentType: "form",
    });
    const res = await post(github("?app=shop"), req.body, req.headers);
    expect(res).toMatchObject({ status: 202, body: { accepted: ["shop"] } });
    expect(pokedApps()).toEqual(["shop"]);
  });

  it("ping answers 200 and fetches nothing; other events are ignored", async () => {
    const ping = githubRequest(JSON.stringify({ zen: "Keep it logically awesome.", hook_id: 1 }), {
      secret: SECRETS.SHOP_HOOK,
      event: "ping",
    });
    expect(await post(github("?app=shop"), ping.body, ping.headers)).toMatchObject({
      status: 200,
      body: { ok: true, event: "ping" },
    });
    const issues = githubRequest(JSON.stringify({ action: "opened" }), {
      secret: SECRETS.SHOP_HOOK,
      event: "issues",
    });
    expect(await post(github("?app=shop"), issues.body, issues.headers)).toMatchObject({
      status: 202,
      body: { ignored: "issues" },
    });
    expect(pokes).not.toHaveBeenCalled();
    expect(await neverRecorded("github", "shop", ping.delivery)).toBe(true);
  });

  it("a ping with a bad signature is refused like anything else", async () => {
    const ping = githubRequest("{}", { secret: "nope", event: "ping" });
    expectError(await post(github("?app=shop"), ping.body, ping.headers), 401, "E_UNAUTHORIZED");
  });

  it.each([
    ["a wrong secret", { secret: "not-the-secret" }],
    ["no signature", { signature: undefined }],
    ["an empty signature", { signature: "" }],
    ["a malformed signature", { signature: "sha256=xyz" }],
    ["a sha1 signature", { signature: `sha1=${"0".repeat(40)}` }],
    ["another app's secret", { secret: SECRETS.SITE_HOOK }],
  ])("%s: 401, nothing fetched, nothing recorded", async (_name, hook) => {
    const req = githubRequest(githubPushPayload(SITE_REPOSITORY), hook);
    const res = await post(github("?app=shop"), req.body, req.headers);
    expectError(res, 401, "E_UNAUTHORIZED");
    if (req.headers["x-hub-signature-256"])
      expect(res.text).not.toContain(req.headers["x-hub-signature-256"]);
    expect(pokes).not.toHaveBeenCalled();
    expect(await neverRecorded("github", "shop", req.delivery)).toBe(true);
    expect((await webhookAudit("shop")).some((e) => e.details.delivery === req.delivery)).toBe(false);
  });

  it("a body changed after signing is refused", async () => {
    const req = githubRequest(githubPushPayload(SITE_REPOSITORY), { secret: SECRETS.SHOP_HOOK });
    const tampered = req.body.replace("refs/heads/main", "refs/heads/evil");
    expectError(await post(github("?app=shop"), tampered, req.headers), 401, "E_UNAUTHORIZED");
    expect(pokes).not.toHaveBeenCalled();
  });

  it("a redelivery (same delivery id) is acknowledged but not acted on twice", async () => {
    const req = githubRequest(githubPushPayload(SITE_REPOSITORY), { secret: SECRETS.SHOP_HOOK });
    expect((await post(github("?app=shop"), req.body, req.headers)).status).toBe(202);
    const again = await post(github("?app=shop"), req.body, req.headers);
    expect(again).toMatchObject({ status: 200, body: { duplicate: true } });
    expect(pokedApps()).toEqual(["shop"]);
    expect((await webhookAudit("shop")).filter((e) => e.details.delivery === req.delivery)).toHaveLength(1);
  });

  it("concurrent redeliveries are acted on once", async () => {
    const req = githubRequest(githubPushPayload(SITE_REPOSITORY), { secret: SECRETS.SHOP_HOOK });
    const results = await Promise.all(
      Array.from({ length: 8 }, () => post(github("?app=shop"), req.body, req.headers)),
    );
    expect(results.map((r) => r.status).sort()).toEqual([200, 200, 200, 200, 200, 200, 200, 202]);
    expect(pokedApps()).toEqual(["shop"]);
  });

  it("a push without X-GitHub-Delivery is a 400 and fetches nothing", async () => {
    const req = githubRequest(githubPushPayload(SITE_REPOSITORY), { secret: SECRETS.SHOP_HOOK });
    delete req.headers["x-github-delivery"];
    expectError(await post(github("?app=shop"), req.body, req.headers), 400, "E_BAD_REQUEST");
    expect(pokes).not.toHaveBeenCalled();
  });

  it("a push whose delivery id is not a short printable token is a 400", async () => {
    const req = githubRequest(githubPushPayload(SITE_REPOSITORY), {
      secret: SECRETS.SHOP_HOOK,
      delivery: "x".repeat(201),
    });
    expectError(await post(github("?app=shop"), req.body, req.headers), 400, "E_BAD_REQUEST");
    expect(pokes).not.toHaveBeenCalled();
  });

  it("the response does not wait for the fetch, and a failed fetch does not fail the hook", async () => {
    pokes.mockImplementation(() => new Promise<void>(() => undefined));
    const slow = githubRequest(githubPushPayload(SITE_REPOSITORY), { secret: SECRETS.SHOP_HOOK });
    expect((await post(github("?app=shop"), slow.body, slow.headers)).status).toBe(202);
    pokes.mockRejectedValue(new Error("fetch failed"));
    const failing = githubRequest(githubPushPayload(SITE_REPOSITORY), { secret: SECRETS.SHOP_HOOK });
    expect((await post(github("?app=shop"), failing.body, failing.headers)).status).toBe(202);
    pokes.mockImplementation(() => {
      throw new Error("synchronous failure");
    });
    const throwing = githubRequest(githubPushPayload(SITE_REPOSITORY), { secret: SECRETS.SHOP_HOOK });
    expect((await post(github("?app=shop"), throwing.body, throwing.headers)).status).toBe(202);
    expect(pokes).toHaveBeenCalledTimes(3);
  });
});

describe("which app", () => {
  it.each([
    ["owner/name only (other case)", { full_name: "ACME/Site" }],
    ["the https clone URL", { clone_url: "https://github.com/acme/site.git" }],
    ["the ssh URL (scp-like)", { ssh_url: "git@github.com:acme/site.git" }],
    ["the git:// URL", { git_url: "git://github.com/acme/site.git" }],
    ["the web URL with a trailing slash", { html_url: "https://GitHub.com/acme/site/" }],
  ])("GitHub payloads are matched by %s", async (_name, repository) => {
    const req = githubRequest(githubPushPayload(repository), { secret: SECRETS.SITE_HOOK });
    const res = await post(github(), req.body, req.headers);
    expect(res.status).toBe(202);
    // `site` (scp-like manifest URL) and `site-twin` (https) share the secret: both are poked.
    expect(res.body.accepted.sort()).toEqual(["site", "site-twin"]);
    expect(pokedApps().sort()).toEqual(["site", "site-twin"]);
  });

  it("two apps on one repository with different secrets: only the verified one is poked", async () => {
    const req = githubRequest(githubPushPayload(SITE_REPOSITORY), { secret: SECRETS.MIRROR_HOOK });
    const res = await post(github(), req.body, req.headers);
    expect(res).toMatchObject({ status: 202, body: { accepted: ["site-mirror"] } });
    expect(pokedApps()).toEqual(["site-mirror"]);
    // The same delivery id later signed for the other apps is theirs to act on: deliveries are per app.
    expect(await neverRecorded("github", "site", req.delivery)).toBe(true);
    expect(await neverRecorded("github", "site-mirror", req.delivery)).toBe(false);
  });

  it("?app= picks one app even when others track the repository", async () => {
    const req = githubRequest(githubPushPayload(SITE_REPOSITORY), { secret: SECRETS.SITE_HOOK });
    const res = await post(github("?app=site-twin"), req.body, req.headers);
    expect(res).toMatchObject({ status: 202, body: { accepted: ["site-twin"] } });
    expect(pokedApps()).toEqual(["site-twin"]);
  });

  it("an unknown app or an untracked repository is refused like a wrong signature (401); a malformed name is a 422", async () => {
    const req = githubRequest(githubPushPayload(SITE_REPOSITORY), { secret: SECRETS.SITE_HOOK });
    const unknown = await post(github("?app=nope"), req.body, req.headers);
    expectError(unknown, 401, "E_UNAUTHORIZED");
    expect(unknown.body.error.message).toBe("X-Hub-Signature-256 does not verify for app 'nope'");
    expectError(await post(github("?app=..%2Fetc"), req.body, req.headers), 422, "E_INVALID_NAME");
    const other = githubRequest(githubPushPayload({ full_name: "acme/other" }), {
      secret: SECRETS.SITE_HOOK,
    });
    const untracked = await post(github(), other.body, other.headers);
    expectError(untracked, 401, "E_UNAUTHORIZED");
    expect(untracked.body.error.message).toBe(
      "X-Hub-Signature-256 does not verify for any app tracking repository 'acme/other'",
    );
    expect(pokes).not.toHaveBeenCalled();
  });

  it("a payload naming no repository needs ?app=", async () => {
    const req = githubRequest(JSON.stringify({ zen: "x" }), { secret: SECRETS.SITE_HOOK, event: "ping" });
    const res = await post(github(), req.body, req.headers);
    expectError(res, 400, "E_BAD_REQUEST");
    expect(res.body.error.message).toContain("?app=");
    const garbage = githubRequest("{not json", { secret: SECRETS.SITE_HOOK });
    expectError(await post(github(), garbage.body, garbage.headers), 400, "E_BAD_REQUEST");
  });

  it("an app without a webhook secret cannot receive hooks", async () => {
    const req = githubRequest(githubPushPayload({ clone_url: "https://git.example.test/o/plain" }), {
      secret: "anything",
    });
    const named = await post(github("?app=plain"), req.body, req.headers);
    expectError(named, 401, "E_UNAUTHORIZED");
    // Said like any refusal (the reason is in the server's log, not told to an anonymous sender).
    expect(named.body.error.message).toBe("X-Hub-Signature-256 does not verify for app 'plain'");
    expectError(await post(github(), req.body, req.headers), 401, "E_UNAUTHORIZED");
    expect(pokes).not.toHaveBeenCalled();
    expect(await neverRecorded("github", "plain", req.delivery)).toBe(true);
  });
});

describe("GitLab", () => {
  const LAB_PROJECT = {
    path_with_namespace: "group/lab",
    git_ssh_url: "git@gitlab.example.test:group/lab.git",
    git_http_url: "https://gitlab.example.test/group/lab.git",
    web_url: "https://gitlab.example.test/group/lab",
  };

  it("the right token: accepted and fetched; a redelivery (same event UUID) is not acted on twice", async () => {
    const body = gitlabPushPayload(LAB_PROJECT);
    const uuid = randomUUID();
    const res = await post(gitlab(), body, gitlabHeaders(SECRETS.LAB_HOOK, "Push Hook", uuid));
    expect(res).toMatchObject({ status: 202, body: { accepted: ["lab"] } });
    const again = await post(gitlab(), body, gitlabHeaders(SECRETS.LAB_HOOK, "Push Hook", uuid));
    expect(again).toMatchObject({ status: 200, body: { duplicate: true } });
    expect(pokedApps()).toEqual(["lab"]);
    expect(await neverRecorded("gitlab", "lab", uuid)).toBe(false);
  });

  it("matches the project by any of its URLs, and accepts tag pushes", async () => {
    const body = gitlabPushPayload({ web_url: "https://gitlab.example.test/Group/Lab" });
    const res = await post(gitlab(), body, gitlabHeaders(SECRETS.LAB_HOOK, "Tag Push Hook", randomUUID()));
    expect(res).toMatchObject({ status: 202, body: { accepted: ["lab"] } });
  });

  it("without an event UUID, Idempotency-Key and then the body identify a redelivery", async () => {
    const body = gitlabPushPayload({ ...LAB_PROJECT, checkout_sha: randomUUID() });
    const key = randomUUID();
    const byKey = { ...gitlabHeaders(SECRETS.LAB_HOOK), "idempotency-key": key };
    expect((await post(gitlab(), body, byKey)).status).toBe(202);
    expect((await post(gitlab(), body, byKey)).body).toEqual({ duplicate: true });
    expect(await neverRecorded("gitlab", "lab", key)).toBe(false);
    const other = gitlabPushPayload({ ...LAB_PROJECT, checkout_sha: randomUUID() });
    expect((await post(gitlab(), other, gitlabHeaders(SECRETS.LAB_HOOK))).status).toBe(202);
    expect((await post(gitlab(), other, gitlabHeaders(SECRETS.LAB_HOOK))).body).toEqual({ duplicate: true });
    expect(pokedApps()).toEqual(["lab", "lab"]);
  });

  it("a wrong or missing token: 401, nothing fetched, nothing recorded", async () => {
    const body = gitlabPushPayload(LAB_PROJECT);
    const uuid = randomUUID();
    expectError(await post(gitlab(), body, gitlabHeaders("wrong", "Push Hook", uuid)), 401, "E_UNAUTHORIZED");
    expectError(
      await post(gitlab(), body, gitlabHeaders(undefined, "Push Hook", uuid)),
      401,
      "E_UNAUTHORIZED",
    );
    // A secret that is a prefix of the real one is no better.
    expectError(
      await post(gitlab(), body, gitlabHeaders(SECRETS.LAB_HOOK.slice(0, -1), "Push Hook", uuid)),
      401,
      "E_UNAUTHORIZED",
    );
    expect(pokes).not.toHaveBeenCalled();
    expect(await neverRecorded("gitlab", "lab", uuid)).toBe(true);
  });

  it("other events (system hooks, merge requests) are ignored", async () => {
    const body = gitlabPushPayload(LAB_PROJECT);
    for (const event of ["System Hook", "Merge Request Hook"]) {
      const res = await post(gitlab("?app=lab"), body, gitlabHeaders(SECRETS.LAB_HOOK, event, randomUUID()));
      expect(res).toMatchObject({ status: 202, body: { ignored: event } });
    }
    expect(pokes).not.toHaveBeenCalled();
  });
});

describe("generic", () => {
  it("a signed delivery for ?app= is accepted once", async () => {
    const body = JSON.stringify({ reason: "artifact published" });
    const headers = genericHeaders(SECRETS.SHOP_HOOK, body);
    expect(await post(generic("?app=shop"), body, headers)).toMatchObject({
      status: 202,
      body: { accepted: ["shop"] },
    });
    expect(await post(generic("?app=shop"), body, headers)).toMatchObject({
      status: 200,
      body: { duplicate: true },
    });
    expect(pokedApps()).toEqual(["shop"]);
  });

  it("an empty body can be signed too", async () => {
    const delivery = randomUUID();
    const res = await fetch(generic("?app=shop"), {
      method: "POST",
      headers: {
        "x-turnout-signature": hmacSha256Header(SECRETS.SHOP_HOOK, ""),
        "x-turnout-delivery": delivery,
      },
    });
    expect(res.status).toBe(202);
    expect(pokedApps()).toEqual(["shop"]);
  });

  it("a bad signature is a 401; no app or no delivery id is a 400", async () => {
    const body = "{}";
    const bad = {
      ...genericHeaders(SECRETS.SHOP_HOOK, body),
      "x-turnout-signature": hmacSha256Header("x", body),
    };
    expectError(await post(generic("?app=shop"), body, bad), 401, "E_UNAUTHORIZED");
    expect(await neverRecorded("generic", "shop", bad["x-turnout-delivery"])).toBe(true);
    expectError(await post(generic(), body, genericHeaders(SECRETS.SHOP_HOOK, body)), 400, "E_BAD_REQUEST");
    const noId: Record<string, string> = genericHeaders(SECRETS.SHOP_HOOK, body);
    delete noId["x-turnout-delivery"];
    expectError(await post(generic("?app=shop"), body, noId), 400, "E_BAD_REQUEST");
    expect(pokes).not.toHaveBeenCalled();
  });
});

describe("transport", () => {
  it("an oversized body is a 413 and fetches nothing", async () => {
    const payload = JSON.stringify({
      padding: "x".repeat(t.settings.bodyLimit),
      repository: SITE_REPOSITORY,
    });
    const req = githubRequest(payload, { secret: SECRETS.SHOP_HOOK });
    expectError(await post(github("?app=shop"), req.body, req.headers), 413, "E_PAYLOAD_TOO_LARGE");
    expect(pokes).not.toHaveBeenCalled();
    expect(await neverRecorded("github", "shop", req.delivery)).toBe(true);
  });

  it("other content types are refused with 415", async () => {
    const body = "hello";
    const headers = { ...genericHeaders(SECRETS.SHOP_HOOK, body), "content-type": "text/plain" };
    expect((await post(generic("?app=shop"), body, headers)).status).toBe(415);
    expect(pokes).not.toHaveBeenCalled();
  });

  it("needs no bearer token, and the rest of the API still does (and still parses JSON)", async () => {
    expect((await fetch(`${t.url}/api/v1/apps`)).status).toBe(401);
    const locked = await t.api("PUT", "/api/v1/apps/shop/environments/staging/lock", { reason: "hooks" });
    expect(locked.status).toBe(200);
    expect((await t.api("DELETE", "/api/v1/apps/shop/environments/staging/lock")).status).toBe(200);
  });

  it("the OpenAPI document lists the webhook routes without bearer security", async () => {
    const doc = (await (await fetch(`${t.url}/api/v1/openapi.json`)).json()) as any;
    for (const provider of ["github", "gitlab", "generic"]) {
      const operation = doc.paths[`/api/v1/webhooks/${provider}`]?.post;
      expect(operation, provider).toBeDefined();
      expect(operation.security).toEqual([]);
    }
  });
});
