import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { environmentRevision } from "../../src/domain/app-revision.js";
import { BACKENDS } from "../helpers/databases.js";
import { startTurnout, type TestTurnout } from "../helpers/turnout.js";
import { until } from "../helpers/wait.js";

const AUTO = (extra = "") => `repo: "{repo}"
poll_interval: 1h
environments:
  staging:
    branch: main
    auto_deploy: true
    deploy:
      provider: shell
      script: |
        echo "deploying $TURNOUT_SHA"
        ${extra}
`;

async function deploysOf(t: TestTurnout, env = "staging") {
  return (await t.store.deploys.list({ app: "shop", env, limit: 100 })).reverse();
}

async function settle(t: TestTurnout) {
  await until(
    async () => (await deploysOf(t)).every((d) => ["succeeded", "failed", "cancelled"].includes(d.status)),
    20_000,
    "deploys finished",
  );
}

describe.each(BACKENDS)("auto-deploy on %s", (backend) => {
  let t: TestTurnout;
  afterEach(async () => t?.stop());

  it("deploys a new commit on the tracked branch with trigger auto, once", async () => {
    t = await startTurnout({ backend, manifest: AUTO() });
    await t.engine.poke("shop", "poll");
    await settle(t);
    const first = await deploysOf(t);
    expect(first.map((d) => [d.trigger, d.sha, d.status])).toEqual([["auto", t.repo.head, "succeeded"]]);
    // Nothing new: nothing happens.
    await t.engine.poke("shop", "poll");
    expect(await deploysOf(t)).toHaveLength(1);
    const next = await t.repo.commit({ VERSION: "2\n" }, "two");
    await t.engine.poke("shop", "poll");
    await settle(t);
    expect((await deploysOf(t)).map((d) => d.sha)).toEqual([first[0]!.sha, next]);
  });

  it("coalesces: while one auto-deploy is queued, a newer commit replaces it", async () => {
    // The first deploy runs until the test opens its gate, after the newer commits are queued.
    const gateDir = mkdtempSync(path.join(tmpdir(), "turnout-gate-"));
    const gate = path.join(gateDir, "open");
    t = await startTurnout({
      backend,
      manifest: AUTO(
        `if [ -f "$TURNOUT_WORKSPACE/SLOW" ]; then while [ ! -e ${JSON.stringify(gate)} ]; do sleep 0.05; done; fi`,
      ),
    });
    await t.repo.commit({ SLOW: "1\n" }, "slow");
    await t.engine.poke("shop", "poll");
    await until(async () => (await deploysOf(t))[0]?.status === "running", 10_000, "first running");
    const b = await t.repo.commit({ VERSION: "b\n" }, "b");
    await t.engine.poke("shop", "poll");
    const c = await t.repo.commit({ VERSION: "c\n" }, "c");
    await t.engine.poke("shop", "poll");
    const queued = (await deploysOf(t)).filter((d) => d.status === "queued");
    expect(queued.map((d) => d.sha)).toEqual([c]);
    expect(queued[0]!.number).toBe(2);
    writeFileSync(gate, "");
    await settle(t);
    const all = await deploysOf(t);
    expect(all).toHaveLength(2);
    expect(all.map((d) => d.sha)).not.toContain(b);
    rmSync(gateDir, { recursive: true, force: true });
  });

  it("does not deploy into a locked environment, and catches up after unlock", async () => {
    t = await startTurnout({ backend, manifest: AUTO() });
    await t.engine.poke("shop", "poll");
    await settle(t);
    await t.api("PUT", "/api/v1/apps/shop/environments/staging/lock", { reason: "freeze" });
    const next = await t.repo.commit({ VERSION: "2\n" }, "two");
    await t.engine.poke("shop", "poll");
    expect(await deploysOf(t)).toHaveLength(1);
    await t.api("DELETE", "/api/v1/apps/shop/environments/staging/lock");
    await until(async () => (await deploysOf(t)).length === 2, 10_000, "catch-up deploy");
    await settle(t);
    expect((await deploysOf(t))[1]).toMatchObject({ sha: next, trigger: "auto", status: "succeeded" });
  });

  it("never re-deploys a commit that was rolled back from until a newer commit arrives", async () => {
    t = await startTurnout({ backend, manifest: AUTO() });
    const v1 = t.repo.head;
    await t.engine.poke("shop", "poll");
    await settle(t);
    const v2 = await t.repo.commit({ VERSION: "2\n" }, "two");
    await t.engine.poke("shop", "poll");
    await settle(t);
    const rollback = await t.api("POST", "/api/v1/apps/shop/environments/staging/rollback", {});
    await t.waitForDeploy(rollback.body.deploy.id);
    expect((await t.store.releases.current("shop", "staging"))?.components).toEqual({ app: v1 });
    await t.engine.poke("shop", "poll");
    await t.engine.poke("shop", "poll");
    expect(await deploysOf(t)).toHaveLength(3);
    const v3 = await t.repo.commit({ VERSION: "3\n" }, "three");
    await t.engine.poke("shop", "poll");
    await settle(t);
    const all = await deploysOf(t);
    expect(all.map((d) => [d.trigger, d.sha])).toEqual([
      ["auto", v1],
      ["auto", v2],
      ["rollback", v1],
      ["auto", v3],
    ]);
  });

  it("does not retry a commit whose deploy failed until a newer commit arrives", async () => {
    t = await startTurnout({
      backend,
      manifest: AUTO('if [ -f "$TURNOUT_WORKSPACE/BROKEN" ]; then exit 3; fi'),
    });
    await t.engine.poke("shop", "poll");
    await settle(t);
    const broken = await t.repo.commit({ BROKEN: "1\n" }, "broken");
    await t.engine.poke("shop", "poll");
    await settle(t);
    await t.engine.poke("shop", "poll");
    await t.engine.poke("shop", "poll");
    await settle(t);
    expect((await deploysOf(t)).map((d) => [d.sha, d.status])).toEqual([
      [(await deploysOf(t))[0]!.sha, "succeeded"],
      [broken, "failed"],
    ]);
    const fixed = await t.repo.commit({ BROKEN: null }, "fix");
    await t.engine.poke("shop", "poll");
    await settle(t);
    expect((await deploysOf(t)).at(-1)).toMatchObject({ sha: fixed, status: "succeeded" });
  });

  it("makes one deploy when a poll and a webhook race on the same commit", async () => {
    t = await startTurnout({ backend, manifest: AUTO() });
    await Promise.all([
      t.engine.poke("shop", "poll"),
      t.engine.poke("shop", "webhook"),
      t.store.autoDeploys.admit({
        app: "shop",
        env: "staging",
        user: "racer",
        ref: "main",
        sha: t.repo.head,
        primary: "app",
        components: { app: t.repo.head },
        configRevision: t.engine.config().revision,
        appRevision: environmentRevision(t.engine.config().apps.get("shop")!, "staging")!,
      }),
    ]);
    await settle(t);
    expect(await deploysOf(t)).toHaveLength(1);
  });
});

describe("polling without any inbound traffic", () => {
  let t: TestTurnout;
  afterEach(async () => t?.stop());

  it("finds a new commit on its own within the poll interval", async () => {
    t = await startTurnout({
      polling: true,
      manifest: AUTO().replace("poll_interval: 1h", "poll_interval: 1s"),
    });
    await until(async () => (await deploysOf(t)).length === 1, 15_000, "first auto-deploy");
    const next = await t.repo.commit({ VERSION: "2\n" }, "two");
    await until(
      async () => (await deploysOf(t)).some((d) => d.sha === next),
      15_000,
      "auto-deploy of the new commit",
    );
    await settle(t);
    expect((await deploysOf(t)).map((d) => d.trigger)).toEqual(["auto", "auto"]);
  });
});

describe("configuration changes", () => {
  let t: TestTurnout;
  afterEach(async () => t?.stop());

  it("redeploys the same code when an auto_deploy environment's settings change, and records the revision", async () => {
    t = await startTurnout({ manifest: AUTO() });
    await t.engine.poke("shop", "poll");
    await settle(t);
    const before = (await deploysOf(t))[0]!;
    await t.writeManifest("shop", AUTO('echo "new setting"'));
    await until(async () => (await deploysOf(t)).length === 2, 10_000, "config redeploy");
    await settle(t);
    const after = (await deploysOf(t))[1]!;
    expect(after).toMatchObject({ trigger: "auto", sha: before.sha, status: "succeeded" });
    expect(after.configRevision).not.toBe(before.configRevision);
    expect(after.configRevision).toBe(t.engine.config().revision);
    const { chunks } = await t.store.logs.read(after.id, 0);
    expect(chunks.map((c) => c.text).join("")).toContain("new setting");
    const releases = await t.api("GET", "/api/v1/apps/shop/environments/staging/releases");
    expect(releases.body.releases[0]).toMatchObject({ configChanged: true, changes: [] });
    expect(releases.body.releases[0].fingerprint).not.toBe(releases.body.releases[1].fingerprint);
  });
});
