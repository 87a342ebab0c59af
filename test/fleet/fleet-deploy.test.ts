import { mkdirSync, rmSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { ensureBuilt, turnout } from "../helpers/built-cli.js";
import {
  type AgentProcess,
  assertConsistent,
  currentOf,
  startAgent,
  waitForHosts,
} from "../helpers/fleet.js";
import { startTurnout, type TestTurnout } from "../helpers/turnout.js";
import { until } from "../helpers/wait.js";

beforeAll(ensureBuilt, 120_000);

/**
 * Fleet deploys end to end: the real server in-process, real `turnout agent`
 * processes with separate roots, real builds and artifacts. After every test,
 * no host's `current` points at a release that was not fully staged.
 */
const fleetManifest = (strategy: string, extra = "") => `repo: "{repo}"
environments:
  production:
    deploy:
      provider: fleet
      hosts: { labels: { role: web } }
      build_script: |
        mkdir -p dist
        cp VERSION dist/VERSION
        if [ -f BIG ]; then cp BIG dist/BIG; fi
        if [ -d many ]; then cp -r many dist/many; fi
        echo "built $TURNOUT_SHA" > dist/BUILD
      artifact: dist
      restart: [sh, -c, 'echo restarted >> "$TURNOUT_RELEASE_DIR/../../restarts"']
      health: { command: [sh, -c, '! grep -q bad VERSION'], retries: 0, interval: 100ms }
      strategy: ${strategy}
${extra}`;

/** 1,500 distinct 2 KiB files: staging them takes a few seconds on every host. */
function manyFiles(seed: string): Record<string, string> {
  const files: Record<string, string> = {};
  for (let i = 0; i < 1500; i++)
    files[`many/${i % 30}/f${i}`] = `${seed}${i}`
      .repeat(2048 / (seed.length + String(i).length) + 1)
      .slice(0, 2048);
  return files;
}

describe("fleet deploys through agents", () => {
  let t: TestTurnout;
  let work: string;
  let agents: AgentProcess[] = [];

  afterEach(async () => {
    for (const a of agents) await a.kill().catch(() => undefined);
    await assertConsistent(agents.map((a) => a.root));
    agents = [];
    await t?.stop();
    await rm(work, { recursive: true, force: true });
  });

  async function start(strategy: string, count = 3, extra = "", reconnectGraceMs?: number) {
    t = await startTurnout({
      manifest: fleetManifest(strategy, extra),
      ...(reconnectGraceMs !== undefined ? { fleetReconnectGraceMs: reconnectGraceMs } : {}),
    });
    work = await mkdtemp(path.join(tmpdir(), "turnout-fleet-"));
    const token = (
      await t.api("POST", "/api/v1/tokens", {
        name: "enroll",
        role: "agent",
        apps: ["shop"],
        labels: ["role=web"],
      })
    ).body.token;
    agents = Array.from({ length: count }, (_, i) =>
      startAgent({
        serverUrl: t.url,
        token,
        name: `web-${i + 1}`,
        root: path.join(work, `web-${i + 1}`),
        labels: { role: "web" },
      }),
    );
    await waitForHosts(
      t.api,
      agents.map((a) => a.name),
    );
    return token;
  }

  const deploy = async (body: Record<string, unknown> = {}) =>
    t.waitForDeploy(
      (await t.api("POST", "/api/v1/apps/shop/environments/production/deploys", body)).body.deploy.id,
      60_000,
    );
  const hostsOf = async (id: number) =>
    (await t.api("GET", `/api/v1/deploys/${id}/hosts`)).body.hosts as any[];
  const logOf = async (id: number) => (await t.store.logs.read(id, 0)).chunks.map((c) => c.text).join("");

  it("stages everywhere, switches canary then batches, and a one-file change moves one blob", async () => {
    await start("{ canary: 1, batch: 1 }");
    const first = await deploy();
    expect(first.status, await logOf(first.id)).toBe("succeeded");
    const release = await t.store.releases.current("shop", "production");
    expect(release?.artifact).toMatch(/^[0-9a-f]{64}$/);
    const releaseId = release!.artifact!.slice(0, 16);
    for (const a of agents) expect(await currentOf(a.root, "shop")).toBe(releaseId);
    const steps = await hostsOf(first.id);
    expect(steps.map((h) => [h.hostName, h.step, h.switched])).toEqual([
      ["web-1", "healthy", true],
      ["web-2", "healthy", true],
      ["web-3", "healthy", true],
    ]);
    expect(steps.map((h) => h.batch)).toEqual([0, 1, 2]);
    const log = await logOf(first.id);
    expect(log).toContain("==> canary: web-1");
    expect(log).toContain("[web-2] switched current to");

    await t.repo.commit({ BIG: "x".repeat(200_000) }, "big file");
    const second = await deploy();
    expect(second.status).toBe("succeeded");
    await t.repo.commit({ VERSION: "1.0.1\n" }, "one small change");
    const third = await deploy();
    expect(third.status).toBe("succeeded");
    for (const h of await hostsOf(third.id)) expect(h.bytesFetched).toBeLessThan(2_000);
    const drift = (await t.api("GET", "/api/v1/apps/shop/environments/production/hosts")).body.hosts;
    expect(drift.map((h: any) => [h.name, h.drifted])).toEqual([
      ["web-1", false],
      ["web-2", false],
      ["web-3", false],
    ]);
  });

  it("keeps deploying with host tokens after the enrollment token is revoked; `turnout hosts APP ENV` shows drift", async () => {
    await start("{ batch: 100% }", 2);
    await t.api("DELETE", "/api/v1/tokens/enroll");
    const done = await deploy();
    expect(done.status, await logOf(done.id)).toBe("succeeded");
    const cli = await turnout(["hosts", "shop", "production", "--server", t.url, "--token", t.adminToken]);
    expect(cli.code).toBe(0);
    const lines = cli.stdout.trim().split("\n");
    expect(lines[0]).toMatch(/^NAME\s+KIND\s+STATE\s+POOL\s+CURRENT\s+DESIRED\s+DRIFT$/);
    expect(lines.slice(1).every((l) => /connected\s+pooled\s+([0-9a-f]{16})\s+\1\s+ok$/.test(l))).toBe(true);
  });

  it("a canary whose health check fails: nothing beyond the canary switched, canary switched back", async () => {
    await start("{ canary: 1, batch: 1 }");
    expect((await deploy()).status).toBe("succeeded");
    const before = await Promise.all(agents.map((a) => currentOf(a.root, "shop")));
    await t.repo.commit({ VERSION: "bad\n" }, "broken release");
    const broken = await deploy();
    expect(broken).toMatchObject({ status: "failed", errorCode: "E_ROLLED_BACK" });
    expect(await Promise.all(agents.map((a) => currentOf(a.root, "shop")))).toEqual(before);
    const steps = await hostsOf(broken.id);
    // The canary went back to its release and out of the pool; nobody else was switched.
    expect(steps.find((h) => h.hostName === "web-1")).toMatchObject({ step: "depooled", switched: false });
    expect(await logOf(broken.id)).toContain("[web-1] switched back to");
    expect(steps.filter((h) => h.hostName !== "web-1").every((h) => h.step === "staged")).toBe(true);
  });

  it("a host whose disk write fails during staging: over the budget nothing switches; within it, it is depooled until a healthy deploy pools it again", async () => {
    await start("{ canary: 1, batch: 2, failure_limit: 0 }");
    // The blob cache's directory is a file: every write of web-2's staging fails.
    const cache = path.join(agents[1]!.root, ".turnout", "blobs");
    rmSync(cache, { recursive: true, force: true });
    mkdirSync(path.dirname(cache), { recursive: true });
    await writeFile(cache, "not a directory");
    const refused = await deploy();
    expect(refused).toMatchObject({ status: "failed", errorCode: "E_STAGE_FAILED" });
    for (const a of agents) expect(await currentOf(a.root, "shop")).toBeNull();

    const depooled = path.join(work, "depooled");
    await t.writeManifest(
      "shop",
      fleetManifest("{ canary: 1, batch: 2, failure_limit: 1 }").replace(
        "      artifact: dist\n",
        `      artifact: dist\n      depool: [sh, -c, 'echo "$0 $1 $TURNOUT_HOST" >> ${depooled}', "{host}", "{sha}"]\n`,
      ),
    );
    const tolerated = await deploy();
    expect(tolerated.status, await logOf(tolerated.id)).toBe("succeeded");
    expect(await currentOf(agents[1]!.root, "shop")).toBeNull();
    expect(await currentOf(agents[0]!.root, "shop")).not.toBeNull();
    const hosts = (await t.api("GET", "/api/v1/hosts")).body.hosts;
    expect(hosts.find((h: any) => h.name === "web-2").poolState).toBe("depooled");
    expect((await hostsOf(tolerated.id)).find((h) => h.hostName === "web-2").step).toBe("depooled");
    // The depool command ran on the server with the host and the deploy's placeholders filled in.
    const { readFileSync } = await import("node:fs");
    expect(readFileSync(depooled, "utf8")).toBe(`web-2 ${tolerated.sha} web-2\n`);

    // Fixed, the next deploy takes web-2 and, once it is healthy, puts it back in the pool.
    rmSync(cache, { force: true });
    const pooled = path.join(work, "pooled");
    await t.writeManifest(
      "shop",
      fleetManifest("{ canary: 1, batch: 2, failure_limit: 1 }").replace(
        "      artifact: dist\n",
        `      artifact: dist\n      pool: [sh, -c, 'echo "$0" >> ${pooled}', "{host}"]\n`,
      ),
    );
    const again = await deploy();
    expect(again.status, await logOf(again.id)).toBe("succeeded");
    expect(await currentOf(agents[1]!.root, "shop")).not.toBeNull();
    const after = (await t.api("GET", "/api/v1/hosts")).body.hosts;
    expect(after.find((h: any) => h.name === "web-2").poolState).toBe("pooled");
    expect(readFileSync(pooled, "utf8")).toBe("web-2\n");
    expect(await logOf(again.id)).toContain("[web-2] healthy again: back in the pool");
  });

  it("an agent killed during download counts against the budget; the others proceed", async () => {
    await start("{ canary: 1, batch: 2, failure_limit: 1 }");
    // Many distinct files make staging last long enough to be caught in the middle.
    await t.repo.commit(manyFiles("y"), "a large artifact");
    const res = await t.api("POST", "/api/v1/apps/shop/environments/production/deploys", {});
    const id = res.body.deploy.id;
    await until(
      async () => (await hostsOf(id)).some((h) => h.hostName === "web-3" && h.step === "staging"),
      30_000,
      "web-3 staging",
    );
    await agents[2]!.kill();
    const done = await t.waitForDeploy(id, 90_000);
    expect(done.status, await logOf(id)).toBe("succeeded");
    expect(await logOf(id)).toContain("[web-3] staging failed");
    const steps = await hostsOf(id);
    expect(steps.find((h) => h.hostName === "web-3").step).toBe("depooled");
    expect(steps.filter((h) => h.hostName !== "web-3").every((h) => h.step === "healthy")).toBe(true);
  });

  it("an agent that reconnects during a deploy: the deploy carries on", async () => {
    // A restarted agent process takes 1–3 s to come back on a loaded machine: the grace must outlast that.
    await start("{ canary: 1, batch: 2 }", 3, "", 20_000);
    await t.repo.commit(manyFiles("z"), "a large artifact");
    const res = await t.api("POST", "/api/v1/apps/shop/environments/production/deploys", {});
    const id = res.body.deploy.id;
    await until(
      async () => (await hostsOf(id)).some((h) => h.hostName === "web-2" && h.step === "staging"),
      30_000,
      "web-2 staging",
    );
    agents[1] = await agents[1]!.restart();
    const done = await t.waitForDeploy(id, 90_000);
    expect(done.status, await logOf(id)).toBe("succeeded");
    expect((await hostsOf(id)).every((h) => h.step === "healthy")).toBe(true);
  });

  it("waits for approval after the canary; abort switches the canary back, approve goes on", async () => {
    await start("{ canary: 1, batch: 2, approval: true, approval_timeout: 1m }");
    expect(
      (await t.api("POST", "/api/v1/apps/shop/environments/production/deploys", { force: true })).status,
    ).toBe(202);
    const first = (await t.store.deploys.list({ limit: 1 }))[0]!;
    await until(
      async () => (await t.store.deploys.get(first.id)).phase === "approval",
      30_000,
      "waiting for approval",
    );
    expect((await t.store.deploys.get(first.id)).status).toBe("waiting");
    const approved = await turnout([
      "approve",
      `shop/production#${first.number}`,
      "--server",
      t.url,
      "--token",
      t.adminToken,
    ]);
    expect(approved.stdout).toBe(`approved shop/production#${first.number}\n`);
    expect((await t.waitForDeploy(first.id, 60_000)).status).toBe("succeeded");
    const live = await currentOf(agents[0]!.root, "shop");

    await t.repo.commit({ VERSION: "2.0.0\n" }, "two");
    const second = (await t.api("POST", "/api/v1/apps/shop/environments/production/deploys", {})).body.deploy;
    await until(
      async () => (await t.store.deploys.get(second.id)).phase === "approval",
      30_000,
      "waiting again",
    );
    expect(await currentOf(agents[0]!.root, "shop")).not.toBe(live);
    const aborting = await turnout(["abort", String(second.id), "--server", t.url, "--token", t.adminToken]);
    expect(aborting.code).toBe(0);
    const aborted = await t.waitForDeploy(second.id, 60_000);
    expect(aborted).toMatchObject({ status: "failed", errorCode: "E_APPROVAL" });
    for (const a of agents) expect(await currentOf(a.root, "shop")).toBe(live);
  });

  it("slots: deploy next beside current, then switch current to it on every host", async () => {
    await start("{ batch: 100% }");
    expect((await deploy()).status).toBe("succeeded");
    const live = await currentOf(agents[0]!.root, "shop");
    await t.repo.commit({ VERSION: "next\n" }, "next version");
    const next = await deploy({ slot: "next" });
    expect(next.status, await logOf(next.id)).toBe("succeeded");
    expect((await t.store.releases.current("shop", "production"))!.deployNumber).toBe(1);
    // A side slot's release was never live: not in the history, not a rollback target.
    const history = (await t.api("GET", "/api/v1/apps/shop/environments/production/releases")).body.releases;
    expect(history.map((r: any) => r.deployNumber)).toEqual([1]);
    for (const a of agents) expect(await currentOf(a.root, "shop")).toBe(live);
    const switched = await t.waitForDeploy(
      (await t.api("POST", "/api/v1/apps/shop/environments/production/switch", { slot: "next" })).body.deploy
        .id,
      60_000,
    );
    expect(switched, await logOf(switched.id)).toMatchObject({ status: "succeeded", trigger: "promote" });
    const nextId = (await t.store.releases.current("shop", "production"))!.artifact!.slice(0, 16);
    expect(nextId).not.toBe(live);
    for (const a of agents) expect(await currentOf(a.root, "shop")).toBe(nextId);
  });

  it("a host that joins later is drifted until reconciled; self_heal does it by itself", async () => {
    const token = await start("{ batch: 100% }", 2, "    self_heal: false\n");
    expect((await deploy()).status).toBe("succeeded");
    agents.push(
      startAgent({
        serverUrl: t.url,
        token,
        name: "web-9",
        root: path.join(work, "web-9"),
        labels: { role: "web" },
      }),
    );
    await waitForHosts(t.api, ["web-9"]);
    const drift = async () =>
      ((await t.api("GET", "/api/v1/apps/shop/environments/production/hosts")).body.hosts as any[])
        .filter((h) => h.drifted)
        .map((h) => h.name);
    expect(await drift()).toEqual(["web-9"]);
    const reconcile = await turnout([
      "reconcile",
      "shop",
      "production",
      "--follow",
      "--server",
      t.url,
      "--token",
      t.adminToken,
    ]);
    expect(reconcile.code, reconcile.stderr).toBe(0);
    const done = (await t.store.deploys.list({ app: "shop", limit: 1 }))[0]!;
    expect(done, await logOf(done.id)).toMatchObject({ status: "succeeded", trigger: "reconcile" });
    expect(await logOf(done.id)).toContain("[web-1] already on");
    await until(async () => (await drift()).length === 0, 10_000, "no drift");

    // self_heal: a new host is brought to the release without anyone asking.
    const manifest = fleetManifest("{ batch: 100% }").replace(
      "    deploy:\n",
      "    self_heal: true\n    deploy:\n",
    );
    await t.writeManifest("shop", manifest);
    agents.push(
      startAgent({
        serverUrl: t.url,
        token,
        name: "web-10",
        root: path.join(work, "web-10"),
        labels: { role: "web" },
      }),
    );
    await until(
      async () => (await currentOf(path.join(work, "web-10"), "shop")) !== null,
      30_000,
      "self-healed web-10",
    );
    await until(async () => (await drift()).length === 0, 10_000, "no drift after self-heal");
  });

  it("self_heal: a host that joined while the environment was locked is brought to the release once the lock goes", async () => {
    const token = await start("{ batch: 100% }", 1, "    self_heal: true\n");
    expect((await deploy()).status).toBe("succeeded");
    const lock = await t.api("PUT", "/api/v1/apps/shop/environments/production/lock", { reason: "freeze" });
    expect(lock.status, JSON.stringify(lock.body)).toBeLessThan(300);
    const root = path.join(work, "web-7");
    agents.push(startAgent({ serverUrl: t.url, token, name: "web-7", root, labels: { role: "web" } }));
    await waitForHosts(t.api, ["web-7"]);
    // Held back by the lock: the host's arrival started no deploy.
    await new Promise((resolve) => setTimeout(resolve, 1500));
    expect(await currentOf(root, "shop")).toBeNull();
    expect(await t.store.deploys.list({ app: "shop", limit: 5 })).toHaveLength(1);
    // Nothing about the hosts changes when the lock goes: the held-back heal is tried again by itself.
    expect((await t.api("DELETE", "/api/v1/apps/shop/environments/production/lock")).status).toBeLessThan(
      300,
    );
    await until(
      async () => (await currentOf(root, "shop")) !== null,
      30_000,
      "self-healed web-7 after the unlock",
    );
    const healed = (await t.store.deploys.list({ app: "shop", limit: 1 }))[0]!;
    expect(healed, await logOf(healed.id)).toMatchObject({ trigger: "reconcile" });
  });

  it("masks a secret a host prints across the end of a 64 KiB message, or in two halves a moment apart", async () => {
    const secret = "sk-very-secret-value";
    t = await startTurnout({
      environment: { SHOP_API_KEY: secret },
      manifest: `repo: "{repo}"
secret_env: [SHOP_API_KEY]
environments:
  production:
    deploy:
      provider: fleet
      hosts: { labels: { role: web } }
      restart: [bash, -c, 'printf "%65530s" "" | tr " " x; printf "%s\\n" "$SHOP_API_KEY"; printf "%s" "\${SHOP_API_KEY:0:7}"; sleep 0.3; printf "%s\\n" "\${SHOP_API_KEY:7}"']
      strategy: { batch: 100% }
`,
    });
    work = await mkdtemp(path.join(tmpdir(), "turnout-fleet-mask-"));
    const token = (
      await t.api("POST", "/api/v1/tokens", { name: "enroll", role: "agent", labels: ["role=web"] })
    ).body.token;
    agents = [
      startAgent({
        serverUrl: t.url,
        token,
        name: "web-1",
        root: path.join(work, "web-1"),
        labels: { role: "web" },
      }),
    ];
    await waitForHosts(t.api, ["web-1"]);
    const done = await deploy();
    const log = await logOf(done.id);
    expect(done.status).toBe("succeeded");
    for (const piece of ["sk-v", "secret", "-value"]) expect(log).not.toContain(piece);
    // Every line of the host's output carries its prefix; joined again, the output is whole, masked.
    const hostText = log
      .split("\n")
      .filter((line) => line.startsWith("[web-1] "))
      .map((line) => line.slice("[web-1] ".length))
      .join("");
    expect(hostText.includes(`${"x".repeat(65_530)}********`)).toBe(true);
    expect(log.match(/^\[web-1\] \*{8}$/gm)).toHaveLength(1);
  });

  it("deploys a tar built elsewhere, without building", async () => {
    t = await startTurnout({ manifest: fleetManifest("{ batch: 100% }") });
    work = await mkdtemp(path.join(tmpdir(), "turnout-fleet-upload-"));
    const token = (
      await t.api("POST", "/api/v1/tokens", {
        name: "enroll",
        role: "agent",
        apps: ["shop"],
        labels: ["role=web"],
      })
    ).body.token;
    agents = [
      startAgent({
        serverUrl: t.url,
        token,
        name: "web-1",
        root: path.join(work, "web-1"),
        labels: { role: "web" },
      }),
    ];
    await waitForHosts(t.api, ["web-1"]);
    const tree = path.join(work, "tree");
    mkdirSync(path.join(tree, "bin"), { recursive: true });
    await writeFile(path.join(tree, "VERSION"), "from-ci\n");
    await writeFile(path.join(tree, "bin", "run"), "#!/bin/sh\necho run\n", { mode: 0o755 });
    const { execFileSync } = await import("node:child_process");
    const tarball = execFileSync("tar", ["-czf", "-", "-C", tree, "."]);
    const upload = await fetch(`${t.url}/api/v1/apps/shop/artifacts`, {
      method: "POST",
      headers: { authorization: `Bearer ${t.adminToken}`, "content-type": "application/gzip" },
      body: tarball,
    });
    expect(upload.status).toBe(201);
    const digest = ((await upload.json()) as any).artifact.digest;
    const res = await t.api("POST", "/api/v1/apps/shop/environments/production/deploys", {
      artifact: digest,
    });
    expect(res.status).toBe(202);
    const done = await t.waitForDeploy(res.body.deploy.id, 60_000);
    const log = (await t.store.logs.read(done.id, 0)).chunks.map((c) => c.text).join("");
    expect(done.status, log).toBe("succeeded");
    expect(log).toContain("uploaded artifact");
    expect(log).not.toContain("building");
    expect(await currentOf(agents[0]!.root, "shop")).toBe(digest.slice(0, 16));
    const { readFileSync } = await import("node:fs");
    expect(readFileSync(path.join(agents[0]!.root, "shop", "current", "VERSION"), "utf8")).toBe("from-ci\n");
    const unknown = await t.api("POST", "/api/v1/apps/shop/environments/production/deploys", {
      artifact: "0".repeat(64),
    });
    expect(unknown.status).toBe(404);
  });
});
