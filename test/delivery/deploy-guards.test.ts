// biome-ignore-all lint/suspicious/noExplicitAny: API responses are untyped JSON in these tests
import { afterEach, describe, expect, it } from "vitest";
import { BACKENDS } from "../helpers/databases.js";
import { startTurnout, type TestTurnout } from "../helpers/turnout.js";
import { until } from "../helpers/wait.js";

/**
 * Deploy windows, limits and commit locks end to end: the real server on a
 * loopback port, a real git repository, real shell deploys, on SQLite and
 * PostgreSQL. The engine's clock is moved by the test (an offset from the
 * real one), so "outside the window" does not depend on when the suite runs.
 */
const manifest = (guards: string) => `repo: "{repo}"
poll_interval: 1h
environments:
  staging:
    branch: main
    auto_deploy: true
${guards
  .split("\n")
  .filter((l) => l.trim())
  .map((l) => `    ${l}`)
  .join("\n")}
    deploy:
      provider: shell
      script: |
        echo "deploying $TURNOUT_SHA"
`;

const WORKDAY_HOURS = `deploy_windows:
  timezone: Europe/Berlin
  allow:
    - { days: [mon-fri], from: "09:00", to: "17:00" }`;

/** A clock the test moves: set(iso) makes the engine's now read that instant, then run on. */
function testClock() {
  let offset = 0;
  let frozen: number | undefined;
  return {
    now: () => new Date(frozen ?? Date.now() + offset),
    set(iso: string) {
      offset = Date.parse(iso) - Date.now();
    },
    advance(ms: number) {
      offset += ms;
    },
    /** Stands still at `iso` (checks made then see that very time) until resume(). */
    freeze(iso: string) {
      frozen = Date.parse(iso);
    },
    /** Runs on from where it stood: a timer set while frozen fires early, and the look it makes asks again. */
    resume() {
      if (frozen !== undefined) offset = frozen - Date.now();
      frozen = undefined;
    },
  };
}

async function deploysOf(t: TestTurnout) {
  return (await t.store.deploys.list({ app: "shop", env: "staging", limit: 100 })).reverse();
}

async function settle(t: TestTurnout) {
  await until(
    async () => (await deploysOf(t)).every((d) => ["succeeded", "failed", "cancelled"].includes(d.status)),
    30_000,
    "deploys finished",
  );
}

async function deployer(t: TestTurnout): Promise<string> {
  return (await t.store.tokens.create({ name: "dev", role: "deployer", apps: null, createdBy: "test" }))
    .token;
}

describe.each(BACKENDS)("deploy windows on %s", (backend) => {
  let t: TestTurnout;
  afterEach(async () => t?.stop());

  it("holds automatic deploys outside the window and makes them when it opens, with nobody asking", async () => {
    const clock = testClock();
    clock.set("2030-01-07T10:00:00Z"); // Monday 11:00 in Berlin: open
    t = await startTurnout({ backend, manifest: manifest(WORKDAY_HOURS), clock: clock.now });
    await t.engine.poke("shop", "poll");
    await settle(t);
    expect((await deploysOf(t)).map((d) => d.sha)).toEqual([t.repo.head]);

    const next = await t.repo.commit({ VERSION: "2\n" }, "two");
    // Tuesday 08:59:57 in Berlin (07:59:57 UTC): the window opens in 3 seconds. The clock
    // stands still while the held deploy is checked, so a slow machine cannot open the window meanwhile.
    clock.freeze("2030-01-08T07:59:57Z");
    await t.engine.poke("shop", "poll");
    expect(await deploysOf(t)).toHaveLength(1);
    expect(t.engine.wakeTimers.pending()).toEqual({ "shop/staging": "2030-01-08T08:00:00.000Z" });
    const readiness = await t.api("GET", "/api/v1/apps/shop/environments/staging/deploy-readiness");
    expect(readiness.body.readiness.ready).toBe(false);
    expect(readiness.body.readiness.reasons).toContainEqual(
      expect.objectContaining({
        code: "outside_window",
        blocking: true,
        forcible: true,
        message:
          "shop/staging is outside its deploy windows; the next window opens 2030-01-08 09:00 Europe/Berlin (08:00 UTC)",
      }),
    );

    // No poke, no request: the timer looks again when the window opens.
    clock.resume();
    await until(async () => (await deploysOf(t)).length === 2, 60_000, "deploy when the window opens");
    await settle(t);
    expect((await deploysOf(t))[1]).toMatchObject({ sha: next, trigger: "auto", status: "succeeded" });
  });

  it("refuses a manual deploy outside the window, saying when it opens; a deployer forces it with a reason", async () => {
    const clock = testClock();
    clock.set("2030-01-12T12:00:00Z"); // Saturday
    t = await startTurnout({ backend, manifest: manifest(WORKDAY_HOURS), clock: clock.now });
    const token = await deployer(t);
    const url = "/api/v1/apps/shop/environments/staging/deploys";

    const refused = await t.api("POST", url, {}, token);
    expect(refused.status).toBe(409);
    expect(refused.body.error).toMatchObject({
      code: "E_OUTSIDE_WINDOW",
      details: { timezone: "Europe/Berlin", nextWindowAt: "2030-01-14T08:00:00.000Z" },
    });
    expect(refused.body.error.message).toContain("the next window opens 2030-01-14 09:00 Europe/Berlin");

    const noReason = await t.api("POST", url, { force: true }, token);
    expect(noReason.status).toBe(400);
    expect(noReason.body.error.code).toBe("E_VALIDATION");
    expect(await deploysOf(t)).toHaveLength(0);

    const forced = await t.api("POST", url, { force: true, reason: "customer outage fix" }, token);
    expect(forced.status).toBe(202);
    expect(forced.body.deploy.ignoredSafeties).toEqual(["window"]);
    const done = await t.waitForDeploy(forced.body.deploy.id);
    expect(done.status).toBe("succeeded");
    const audit = await t.store.audit.list({ app: "shop", limit: 10 });
    expect(audit.find((e) => e.action === "deploy.force")).toMatchObject({
      actor: "dev",
      details: { deploy: "shop/staging#1", ignored: ["window"], reason: "customer outage fix" },
    });

    // Inside the window no force is needed.
    clock.set("2030-01-14T08:00:00Z");
    const plain = await t.api("POST", url, {}, token);
    expect(plain.status).toBe(202);
    expect(plain.body.deploy.ignoredSafeties).toEqual([]);
    await t.waitForDeploy(plain.body.deploy.id);
  });
});

describe.each(BACKENDS)("deploy limits on %s", (backend) => {
  let t: TestTurnout;
  afterEach(async () => t?.stop());

  it("brings at most max_commits_per_deploy commits per automatic deploy; the rest follow", async () => {
    t = await startTurnout({ backend, manifest: manifest("max_commits_per_deploy: 2") });
    await t.engine.poke("shop", "poll");
    await settle(t);
    const first = t.repo.head;
    const c: string[] = [];
    for (let i = 1; i <= 5; i++) c.push(await t.repo.commit({ VERSION: `${i}\n` }, `c${i}`));
    for (let round = 0; round < 3; round++) {
      await t.engine.poke("shop", "poll");
      await settle(t);
    }
    await t.engine.poke("shop", "poll");
    const all = await deploysOf(t);
    expect(all.map((d) => d.sha)).toEqual([first, c[1], c[3], c[4]]);
    expect(all.every((d) => d.trigger === "auto" && d.status === "succeeded")).toBe(true);
    // Stopping short of the branch head, the deploy names its commit; the head is deployed as the branch.
    expect(all.map((d) => d.ref)).toEqual(["main", c[1], c[3], "main"]);
  });

  it("waits min_interval between automatic deploys", async () => {
    const clock = testClock();
    t = await startTurnout({ backend, manifest: manifest("min_interval: 1h"), clock: clock.now });
    await t.engine.poke("shop", "poll");
    await settle(t);
    const [first] = await deploysOf(t);
    const next = await t.repo.commit({ VERSION: "2\n" }, "two");
    await t.engine.poke("shop", "poll");
    expect(await deploysOf(t)).toHaveLength(1);
    const due = new Date(Date.parse(first!.createdAt) + 3_600_000).toISOString();
    expect(t.engine.wakeTimers.pending()).toEqual({ "shop/staging": due });
    // An hour later by the clock, the next look deploys it.
    clock.advance(3_600_000);
    await t.engine.poke("shop", "poll");
    await settle(t);
    expect((await deploysOf(t)).map((d) => d.sha)).toEqual([first!.sha, next]);
  });
});

describe.each(BACKENDS)("commit locks on %s", (backend) => {
  let t: TestTurnout;
  afterEach(async () => t?.stop());

  it("stops automatic deploys before a locked commit, refuses manual ones unless forced, and catches up on unlock", async () => {
    t = await startTurnout({ backend, manifest: manifest("") });
    await t.engine.poke("shop", "poll");
    await settle(t);
    const token = await deployer(t);
    // main: c1, c2, merge of side (whose s1 is the bad commit), c3.
    const c1 = await t.repo.commit({ VERSION: "1\n" }, "c1");
    await t.repo.checkout("side");
    const s1 = await t.repo.commit({ BAD: "1\n" }, "bad change");
    await t.repo.checkout("main");
    const c2 = await t.repo.commit({ VERSION: "2\n" }, "c2");
    await t.repo.git("merge", "--no-ff", "--quiet", "-m", "merge side", "side");
    const merge = (await t.repo.git("rev-parse", "HEAD")).trim();
    const c3 = await t.repo.commit({ VERSION: "3\n" }, "c3");
    expect(c1).not.toBe(c2);

    const locked = await t.api(
      "POST",
      "/api/v1/apps/shop/commit-locks",
      { sha: s1.slice(0, 10), reason: "bad merge, revert follows" },
      token,
    );
    expect(locked.status).toBe(201);
    expect(locked.body.lock).toMatchObject({ sha: s1, lockedBy: "dev", reason: "bad merge, revert follows" });

    await t.engine.poke("shop", "poll");
    await settle(t);
    expect((await deploysOf(t)).at(-1)).toMatchObject({ sha: c2, trigger: "auto", status: "succeeded" });

    const pending = await t.api("GET", "/api/v1/apps/shop/environments/staging/pending");
    const commits = pending.body.components[0].commits;
    expect(commits.find((c: any) => c.sha === s1).locked).toMatchObject({ lockedBy: "dev" });
    expect(commits.find((c: any) => c.sha === c3).locked).toBeNull();
    expect(commits.map((c: any) => c.sha)).toContain(merge);

    const url = "/api/v1/apps/shop/environments/staging/deploys";
    const refused = await t.api("POST", url, {}, token);
    expect(refused.status).toBe(409);
    expect(refused.body.error.code).toBe("E_COMMIT_LOCKED");
    expect(refused.body.error.details.commits).toEqual([
      expect.objectContaining({ sha: s1, reason: "bad merge, revert follows" }),
    ]);
    const readiness = await t.api("GET", "/api/v1/apps/shop/environments/staging/deploy-readiness");
    expect(readiness.body.readiness.reasons.map((r: any) => r.code)).toContain("commit_locked");
    // A range without the locked commit is fine.
    const before = await t.api("POST", url, { ref: c2 }, token);
    expect(before.status).toBe(202);
    await t.waitForDeploy(before.body.deploy.id);

    // Unlocking lets the automatic deploy catch up by itself.
    const unlocked = await t.api("DELETE", `/api/v1/apps/shop/commit-locks/${s1}`, undefined, token);
    expect(unlocked.body.lock).toMatchObject({ sha: s1, unlockedBy: "dev" });
    await until(async () => (await deploysOf(t)).some((d) => d.sha === c3), 20_000, "catch-up deploy");
    await settle(t);

    // A locked commit at the head: nothing automatic; a forced manual deploy goes through.
    const c4 = await t.repo.commit({ VERSION: "4\n" }, "c4");
    await t.api("POST", "/api/v1/apps/shop/commit-locks", { sha: c4, reason: "wait" }, token);
    const count = (await deploysOf(t)).length;
    await t.engine.poke("shop", "poll");
    expect(await deploysOf(t)).toHaveLength(count);
    const forced = await t.api("POST", url, { force: true }, token);
    expect(forced.status).toBe(202);
    expect(forced.body.deploy.ignoredSafeties).toEqual(["commit-lock"]);
    expect((await t.waitForDeploy(forced.body.deploy.id)).status).toBe("succeeded");

    const history = await t.api("GET", "/api/v1/apps/shop/commit-locks?history=true");
    expect(history.body.locks.map((l: any) => [l.sha, l.unlockedBy])).toEqual([
      [c4, null],
      [s1, "dev"],
    ]);
    const inForce = await t.api("GET", "/api/v1/apps/shop/commit-locks");
    expect(inForce.body.locks.map((l: any) => l.sha)).toEqual([c4]);
  });

  it("refuses bad commit-lock input with clear codes, and locks nothing", async () => {
    t = await startTurnout({ backend, manifest: manifest("") });
    const post = (body: unknown) => t.api("POST", "/api/v1/apps/shop/commit-locks", body);
    expect((await post({ sha: "--upload-pack=touch x", reason: "x" })).body.error.code).toBe("E_INVALID_REF");
    expect((await post({ sha: "deadbeefdeadbeef", reason: "x" })).body.error.code).toBe("E_REF_NOT_FOUND");
    expect((await post({ sha: t.repo.head })).body.error.code).toBe("E_VALIDATION");
    expect((await post({ sha: t.repo.head, reason: "x", extra: 1 })).status).toBe(400);
    const viewer = (await t.store.tokens.create({ name: "v", role: "viewer", apps: null, createdBy: "t" }))
      .token;
    expect(
      (await t.api("POST", "/api/v1/apps/shop/commit-locks", { sha: t.repo.head, reason: "x" }, viewer))
        .status,
    ).toBe(403);
    expect(await t.store.commitLocks.list("shop", { history: true })).toEqual([]);
    // Someone else's lock is not taken over.
    await post({ sha: t.repo.head, reason: "mine" });
    const other = await t.store.tokens.create({
      name: "other",
      role: "deployer",
      apps: null,
      createdBy: "t",
    });
    const clash = await t.api(
      "POST",
      "/api/v1/apps/shop/commit-locks",
      { sha: t.repo.head, reason: "theirs" },
      other.token,
    );
    expect(clash.status).toBe(409);
    expect(clash.body.error.code).toBe("E_CONFLICT");
  });
});
