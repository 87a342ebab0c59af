import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it, type MockInstance, vi } from "vitest";
import { deliveryKey } from "../../src/http/webhooks/deliver.js";
import { BACKENDS } from "../helpers/databases.js";
import { startTurnout, type TestTurnout } from "../helpers/turnout.js";
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
 * A storm of hooks: 20 apps, 10 distinct deliveries each over the three
 * providers, a fifth of them redelivered, all sent at once. Every distinct
 * delivery must be acted on exactly once, whichever request wins the race.
 */
const APPS = Array.from({ length: 20 }, (_, i) => `storm-${String(i + 1).padStart(2, "0")}`);
const PER_APP = 10;
const secretEnv = (app: string) => app.toUpperCase().replace("-", "_");
const secretOf = (app: string) => `secret-of-${app}`;

interface Delivery {
  provider: "github" | "gitlab" | "generic";
  app: string;
  id: string;
  url: string;
  body: string;
  headers: Record<string, string>;
}

describe.each(BACKENDS)("a webhook storm on %s", (backend) => {
  let t: TestTurnout;
  let pokes: MockInstance<TestTurnout["engine"]["poke"]>;

  beforeAll(async () => {
    const environment = Object.fromEntries(APPS.map((app) => [secretEnv(app), secretOf(app)]));
    t = await startTurnout({ backend, environment });
    for (const app of APPS) {
      await t.writeManifest(app, hookManifest(`https://git.example.test/storm/${app}.git`, secretEnv(app)));
    }
    expect(APPS.every((app) => t.engine.config().apps.has(app))).toBe(true);
    pokes = vi.spyOn(t.engine, "poke").mockResolvedValue(undefined);
  });

  afterAll(async () => {
    await t?.stop();
  });

  function delivery(app: string, n: number): Delivery {
    const repo = `https://git.example.test/storm/${app}`;
    const provider = (["github", "gitlab", "generic"] as const)[n % 3]!;
    const id = randomUUID();
    const base = `${t.url}/api/v1/webhooks/${provider}`;
    if (provider === "github") {
      // Found by repository, not by name.
      const req = githubRequest(githubPushPayload({ clone_url: `${repo}.git` }), {
        secret: secretOf(app),
        delivery: id,
      });
      return { provider, app, id, url: base, body: req.body, headers: req.headers };
    }
    if (provider === "gitlab") {
      const body = gitlabPushPayload({ git_http_url: `${repo}.git`, web_url: repo });
      return { provider, app, id, url: base, body, headers: gitlabHeaders(secretOf(app), "Push Hook", id) };
    }
    const body = JSON.stringify({ n });
    return {
      provider,
      app,
      id,
      url: `${base}?app=${app}`,
      body,
      headers: genericHeaders(secretOf(app), body, id),
    };
  }

  it("acts on every distinct delivery exactly once", async () => {
    const distinct = APPS.flatMap((app) => Array.from({ length: PER_APP }, (_, n) => delivery(app, n)));
    const redelivered = distinct.filter((_, i) => i % 5 === 0);
    const requests = [...distinct, ...redelivered].sort(() => Math.random() - 0.5);

    const started = Date.now();
    const responses = await Promise.all(requests.map((d) => post(d.url, d.body, d.headers)));
    const elapsed = Date.now() - started;

    expect(responses.filter((r) => r.status < 200 || r.status >= 300).map((r) => r.text)).toEqual([]);
    // Per distinct delivery: one 202 naming its app; every other answer a duplicate.
    const accepted = new Map<string, number>();
    responses.forEach((response, i) => {
      const d = requests[i]!;
      if (response.status === 202) {
        expect(response.body).toEqual({ accepted: [d.app] });
        accepted.set(`${d.provider}:${d.id}`, (accepted.get(`${d.provider}:${d.id}`) ?? 0) + 1);
      } else {
        expect(response.body).toEqual({ duplicate: true });
      }
    });
    expect(accepted.size).toBe(distinct.length);
    expect([...accepted.values()].every((count) => count === 1)).toBe(true);

    const pokesPerApp = new Map<string, number>();
    for (const [app] of pokes.mock.calls) pokesPerApp.set(app, (pokesPerApp.get(app) ?? 0) + 1);
    expect(Object.fromEntries(pokesPerApp)).toEqual(Object.fromEntries(APPS.map((app) => [app, PER_APP])));

    // Each delivery is in the store (recording it again is refused), and audited once.
    for (const d of distinct) {
      expect(await t.store.webhooks.recordDelivery(d.provider, deliveryKey(d.app, d.id), d.app)).toBe(false);
    }
    const audited = (await t.store.audit.list({ limit: 10_000 })).filter((e) => e.action === "webhook");
    expect(audited).toHaveLength(distinct.length);
    expect(new Set(audited.map((e) => `${e.details["provider"]}:${e.details["delivery"]}`)).size).toBe(
      distinct.length,
    );
    // Reported, not asserted: timing depends on the machine.
    console.log(`webhook storm on ${backend}: ${requests.length} requests in ${elapsed} ms`);
  });
});
