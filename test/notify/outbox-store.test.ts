import { describe, expect, it } from "vitest";
import { parseManifest } from "../../src/config/manifest-loader.js";
import { resolveNotifySettings } from "../../src/config/notify-settings.js";
import { lockEvent } from "../../src/domain/notification-event.js";
import { nextAttempt } from "../../src/domain/notify-retry.js";
import { BACKENDS, useTestStore } from "../helpers/databases.js";
import { newDeploy } from "../store/fixtures.js";

const lock = (env: string, reason: string) =>
  lockEvent(
    { app: "shop", env, lockedBy: "ann", reason, createdAt: new Date().toISOString() },
    "lock.locked",
    "ann",
    new Date().toISOString(),
  );

for (const backend of BACKENDS) {
  describe(`the notification outbox (${backend})`, () => {
    const store = useTestStore(backend);

    it("writes a deploy's events in the transactions of its changes, in order", async () => {
      const s = store();
      const deploy = await s.deploys.create(newDeploy(), () => ({ ignoredSafeties: [] }));
      const claimed = await s.deploys.claimNext("w1", 30_000);
      expect(claimed?.id).toBe(deploy.id);
      await s.deploys.finish(deploy.id, "w1", {
        status: "failed",
        errorCode: "E_ROLLED_BACK",
        errorMessage: "x",
      });
      await s.locks.lock("shop", "staging", "ann", "freeze");
      await s.locks.unlock("shop", "staging", "bob");
      expect(await s.notify.pendingEvents()).toBe(5);
      const seen: string[] = [];
      await s.notify.fanOut(100, (event) => {
        seen.push(`${event.kind}:${event.actor}`);
        return ["hook"];
      });
      expect(seen).toEqual([
        "deploy.queued:dev",
        "deploy.started:turnout",
        "deploy.rolled_back:turnout",
        "lock.locked:ann",
        "lock.unlocked:bob",
      ]);
      expect(await s.notify.pendingEvents()).toBe(0);
    });

    it("claims each subject's pending deliveries per channel as one chain, in order; a failing one holds back the rest", async () => {
      const s = store();
      await s.notify.record(lock("staging", "one"));
      await s.notify.record(lock("staging", "two"));
      await s.notify.record(lock("production", "three"));
      await s.notify.fanOut(100, () => ["a", "b"]);
      const first = await s.notify.claim("w1", 60_000, 100);
      // Per channel: staging's chain (one, then two) and production's.
      expect(first.map((d) => `${d.channel}:${d.event.lock?.reason}`).sort()).toEqual([
        "a:one",
        "a:three",
        "a:two",
        "b:one",
        "b:three",
        "b:two",
      ]);
      expect(first.map((d) => d.id)).toEqual([...first.map((d) => d.id)].sort((x, y) => x - y));
      // Leased: nobody else gets them.
      expect(await s.notify.claim("w2", 60_000, 100)).toEqual([]);
      const pick = (channel: string, reason: string) =>
        first.find((d) => d.channel === channel && d.event.lock?.reason === reason)!;
      await s.notify.complete("w1", [
        {
          id: pick("a", "one").id,
          outcome: "retry",
          error: "down",
          nextAttemptAt: new Date(Date.now() + 60_000).toISOString(),
        },
        // Held back behind the retry: not attempted.
        { id: pick("a", "two").id, outcome: "released" },
        { id: pick("a", "three").id, outcome: "delivered" },
        { id: pick("b", "one").id, outcome: "delivered", state: { ts: "1.2" } },
        { id: pick("b", "two").id, outcome: "delivered", state: { ts: "1.3" } },
        { id: pick("b", "three").id, outcome: "delivered" },
      ]);
      expect(await s.notify.get(pick("a", "one").id)).toMatchObject({
        status: "pending",
        lastError: "down",
        attempts: 1,
      });
      expect(await s.notify.get(pick("a", "two").id)).toMatchObject({ status: "pending", attempts: 0 });
      // a's "two" stays behind a's "one", whose retry is not due yet; b is done.
      expect(await s.notify.claim("w2", 60_000, 100)).toEqual([]);
      // A new event on b's subject sees the state the chain left last.
      await s.notify.record(lock("staging", "four"));
      await s.notify.fanOut(100, () => ["b"]);
      const next = await s.notify.claim("w3", 60_000, 100);
      expect(next.map((d) => `${d.channel}:${d.event.lock?.reason}`)).toEqual(["b:four"]);
      expect(next[0]!.state).toEqual({ ts: "1.3" });
    });

    it("a chain is cut at a delivery that is not due, and a claim takes at most its limit", async () => {
      const s = store();
      for (const reason of ["one", "two", "three", "four"]) await s.notify.record(lock("staging", reason));
      await s.notify.fanOut(100, () => ["a"]);
      const two = await s.notify.claim("w1", 60_000, 2);
      expect(two.map((d) => d.event.lock?.reason)).toEqual(["one", "two"]);
      // "one" is delivered; "two" fails and is retried later: "three" and "four" wait behind it.
      await s.notify.complete("w1", [
        { id: two[0]!.id, outcome: "delivered" },
        {
          id: two[1]!.id,
          outcome: "retry",
          error: "down",
          nextAttemptAt: new Date(Date.now() + 60_000).toISOString(),
        },
      ]);
      expect(await s.notify.claim("w2", 60_000, 100)).toEqual([]);
    });

    it("a round with nothing to do is one read on PostgreSQL; with an event, the round fans it out and claims", async () => {
      const s = store();
      const plan = () => ["hook"];
      const before = s.queries();
      expect(await s.notify.fanOutAndClaim(plan, "w1", 30_000, 100)).toEqual({ fanned: 0, claimed: [] });
      // PostgreSQL: one look, not BEGIN, two reads and COMMIT. SQLite: the transaction, local and cheap.
      expect(s.queries() - before).toBe(backend === "postgres" ? 1 : 4);
      await s.locks.lock("shop", "staging", "ann", "freeze");
      const round = await s.notify.fanOutAndClaim(plan, "w1", 30_000, 100);
      expect(round.fanned).toBe(1);
      expect(round.claimed.map((d) => d.kind)).toEqual(["lock.locked"]);
    });

    it("two claimers at once never get the same delivery", async () => {
      const s = store();
      for (let i = 0; i < 40; i++) await s.notify.record(lock(`env-${i}`, String(i)));
      await s.notify.fanOut(100, () => ["a"]);
      const [x, y] = await Promise.all([s.notify.claim("w1", 60_000, 25), s.notify.claim("w2", 60_000, 25)]);
      const ids = [...x, ...y].map((d) => d.id);
      expect(new Set(ids).size).toBe(ids.length);
      expect(ids.length).toBe(40);
    });
  });
}

describe("notification settings and subscriptions", () => {
  it("resolves *_env secrets, and says which variable is missing without any value", () => {
    const settings = resolveNotifySettings(
      { channels: { audit: { type: "webhook", url: "https://example.com/h", secret_env: "HOOK" } } },
      undefined,
      { HOOK: "s3cret-s3cret-s3cret" },
    );
    expect(settings.channels).toEqual([
      {
        name: "audit",
        type: "webhook",
        options: { url: "https://example.com/h", secret: "s3cret-s3cret-s3cret" },
      },
    ]);
    expect(() =>
      resolveNotifySettings({ channels: { audit: { type: "webhook", secret_env: "NOPE" } } }, undefined, {}),
    ).toThrow("notify channel audit: environment variable NOPE (secret_env) is not set");
  });

  it("a manifest naming a channel the server does not define is a problem with its file and line", () => {
    const text = `repo: https://example.com/x.git
notify:
  - channel: audit
environments:
  staging:
    notify:
      - channel: slack-ops
        events: [deploy.succeeded]
      - channel: audit
        events: [deploy.nonsense]
    deploy:
      provider: shell
      command: ["true"]
`;
    const result = parseManifest("/etc/turnout.d/shop.yaml", text, {
      defaultTimeoutMs: 1000,
      defaultIdleTimeoutMs: 1000,
      environment: {},
      hostedReposDir: "/tmp/hosted",
      notifyChannels: ["audit"],
    });
    expect("problems" in result && result.problems).toEqual([
      expect.objectContaining({ line: 10, field: "environments.staging.notify.1.events.0" }),
    ]);
    const fixed = text.replace("deploy.nonsense", "lock.*");
    const again = parseManifest("/etc/turnout.d/shop.yaml", fixed, {
      defaultTimeoutMs: 1000,
      defaultIdleTimeoutMs: 1000,
      environment: {},
      hostedReposDir: "/tmp/hosted",
      notifyChannels: ["audit"],
    });
    expect("problems" in again && again.problems).toEqual([
      {
        file: "/etc/turnout.d/shop.yaml",
        line: 7,
        field: "environments.staging.notify.0.channel",
        message: "no notification channel 'slack-ops' in the server's settings (defined: audit)",
      },
    ]);
  });

  it("backs off exponentially, honours Retry-After, and gives up after the attempts or the age", () => {
    const policy = { baseMs: 1000, maxMs: 8000, maxAttempts: 5, maxAgeMs: 60_000 };
    expect(nextAttempt(policy, 1, 0, 0, 0)).toEqual({ retryAt: 500 });
    expect(nextAttempt(policy, 3, 0, 0, 0.999)).toEqual({ retryAt: 3998 });
    expect(nextAttempt(policy, 4, 0, 0, 0)).toEqual({ retryAt: 4000 });
    expect(nextAttempt(policy, 2, 0, 0, 0, 30_000)).toEqual({ retryAt: 8000 });
    expect(nextAttempt(policy, 5, 0, 0, 0)).toEqual({ giveUp: "gave up after 5 attempts" });
    expect("giveUp" in nextAttempt(policy, 1, 0, 59_900, 0)).toBe(true);
  });
});
