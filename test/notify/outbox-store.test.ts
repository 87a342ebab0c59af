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

    it("claims only the first pending delivery of a subject per channel; a failing one holds back the rest", async () => {
      const s = store();
      await s.notify.record(lock("staging", "one"));
      await s.notify.record(lock("staging", "two"));
      await s.notify.record(lock("production", "three"));
      await s.notify.fanOut(100, () => ["a", "b"]);
      const first = await s.notify.claim("w1", 60_000, 100);
      // Per channel: staging's first and production's; staging's second waits.
      expect(first.map((d) => `${d.channel}:${d.event.lock?.reason}`).sort()).toEqual([
        "a:one",
        "a:three",
        "b:one",
        "b:three",
      ]);
      // Leased: nobody else gets them, nor what they hold back.
      expect(await s.notify.claim("w2", 60_000, 100)).toEqual([]);
      const a1 = first.find((d) => d.channel === "a" && d.event.lock?.reason === "one")!;
      const b1 = first.find((d) => d.channel === "b" && d.event.lock?.reason === "one")!;
      await s.notify.complete("w1", [
        {
          id: a1.id,
          outcome: "retry",
          error: "down",
          nextAttemptAt: new Date(Date.now() + 60_000).toISOString(),
        },
        { id: b1.id, outcome: "delivered", state: { ts: "1.2" } },
      ]);
      const next = await s.notify.claim("w2", 60_000, 100);
      // b moves on to "two" and sees what it remembered; a's "two" waits behind the retry.
      expect(next.map((d) => `${d.channel}:${d.event.lock?.reason}`)).toEqual(["b:two"]);
      expect(next[0]!.state).toEqual({ ts: "1.2" });
      expect(next[0]!.attempts).toBe(1);
      const retried = await s.notify.get(a1.id);
      expect(retried).toMatchObject({ status: "pending", lastError: "down", attempts: 1 });
      // a's "two" stays behind a's "one", whose retry is not due yet.
      await s.notify.complete("w2", [{ id: next[0]!.id, outcome: "delivered" }]);
      const later = await s.notify.claim("w3", 60_000, 100);
      expect(later).toEqual([]);
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
