import { existsSync, readdirSync } from "node:fs";
import { mkdtemp, rm, unlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { packTar } from "../artifacts/helpers.js";
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
 * Point 17 end to end: the real server with retention as tight as it goes
 * (one release per environment, no grace, one log), real agents. A
 * collection while a deploy is staging loses nothing that deploy needs: the
 * second host stages after the collection, from the server's blobs. Kept
 * releases roll back; a release whose artifact retention removed is refused
 * clearly; `turnout gc` says what goes.
 */
const manifest = (dir: string) => `repo: "{repo}"
environments:
  production:
    deploy:
      provider: fleet
      hosts: { labels: { role: web } }
      # One host at a time: the second stages only after the first's before_switch.
      strategy: { concurrency: 1 }
      before_switch: [sh, -c, 'touch "${dir}/staging.$$"; while [ -f "${dir}/hold" ]; do sleep 0.05; done']
`;

describe("retention with fleet deploys running", () => {
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

  async function start() {
    work = await mkdtemp(path.join(tmpdir(), "turnout-fleet-gc-"));
    t = await startTurnout({
      manifest: manifest(work),
      environment: {
        TURNOUT_RETENTION_RELEASES: "1",
        TURNOUT_RETENTION_ARTIFACT_GRACE: "0s",
        TURNOUT_RETENTION_BLOB_GRACE: "0s",
        TURNOUT_RETENTION_LOGS: "1",
        TURNOUT_RETENTION_LOG_AGE: "0s",
        TURNOUT_GC_INTERVAL: "off",
        TURNOUT_GC_AFTER_DEPLOYS: "0",
      },
    });
    // The grant decides which labels count (test/fleet/fleet-isolation.test.ts): this one grants role=web.
    const token = (
      await t.api("POST", "/api/v1/tokens", { name: "enroll", role: "agent", labels: ["role=web"] })
    ).body.token;
    agents = ["web-1", "web-2"].map((name) =>
      startAgent({ serverUrl: t.url, token, name, root: path.join(work, name), labels: { role: "web" } }),
    );
    await waitForHosts(t.api, ["web-1", "web-2"]);
  }

  const deploy = async (body: Record<string, unknown> = {}) =>
    (await t.api("POST", "/api/v1/apps/shop/environments/production/deploys", body)).body.deploy.id as number;
  const logOf = async (id: number) => (await t.store.logs.read(id, 0)).chunks.map((c) => c.text).join("");
  const artifactOf = async (id: number) =>
    (await t.store.releases.get((await t.store.deploys.get(id)).releaseId!)).artifact!;
  const stagingMarks = () => readdirSync(work).filter((n) => n.startsWith("staging."));

  it("a collection while a deploy stages keeps its artifact; kept releases roll back, removed ones are refused", async () => {
    await start();
    const first = await t.waitForDeploy(await deploy(), 60_000);
    expect(first.status, await logOf(first.id)).toBe("succeeded");
    const firstArtifact = await artifactOf(first.id);

    // An upload no one deploys: garbage as soon as it is stored (no grace here).
    const upload = await fetch(`${t.url}/api/v1/apps/shop/artifacts`, {
      method: "POST",
      headers: { authorization: `Bearer ${t.adminToken}`, "content-type": "application/x-tar" },
      body: await packTar([{ name: "unused.txt", content: "nobody deploys this\n" }]),
    });
    expect(upload.status).toBe(201);
    const unused = ((await upload.json()) as { artifact: { digest: string } }).artifact.digest;

    // The second release stages on web-1 and waits there; web-2 has not fetched anything yet.
    await t.repo.commit(
      { VERSION: "2.0.0\n", "assets/new.txt": "new in the second release\n".repeat(100) },
      "two",
    );
    await writeFile(path.join(work, "hold"), "");
    const marksBefore = stagingMarks().length;
    const second = await deploy();
    await until(() => stagingMarks().length > marksBefore, 30_000, "web-1 staging the second release");
    const running = await t.store.deploys.get(second);
    expect(running.status).toBe("running");

    const gc = await t.api("POST", "/api/v1/gc", { dryRun: false });
    expect(gc.status).toBe(200);
    // The upload went (and the first deploy's log: only the newest deploy's is kept)…
    expect(gc.body.gc.removed.artifacts.count).toBeGreaterThanOrEqual(1);
    expect((await t.api("GET", `/api/v1/artifacts/${unused}`)).status).toBe(404);
    expect(gc.body.gc.removed.logs.count).toBe(1);

    // … but web-2 still stages the second release from the server's blobs afterwards.
    await unlink(path.join(work, "hold"));
    const done = await t.waitForDeploy(second, 60_000);
    expect(done.status, await logOf(second)).toBe("succeeded");
    const secondArtifact = await artifactOf(second);
    for (const a of agents) expect(await currentOf(a.root, "shop")).toBe(secondArtifact.slice(0, 16));

    // The first release is still on the hosts (they keep old releases): kept, and a rollback to it works.
    await t.api("POST", "/api/v1/gc", {});
    const rollback = await t.api("POST", "/api/v1/apps/shop/environments/production/rollback", { to: 1 });
    expect(rollback.status).toBe(202);
    const rolledBack = await t.waitForDeploy(rollback.body.deploy.id, 60_000);
    expect(rolledBack.status, await logOf(rolledBack.id)).toBe("succeeded");
    for (const a of agents) expect(await currentOf(a.root, "shop")).toBe(firstArtifact.slice(0, 16));

    // Hosts that are gone hold nothing: with their records removed, the second release is no one's
    // any more (not the newest release, not on a host) and goes; a rollback to it is refused, clearly.
    for (const a of agents) await a.kill();
    agents = [];
    const db = (t.store as unknown as { database: { db: import("kysely").Kysely<any> } }).database.db;
    await db.deleteFrom("host_apps").execute();
    await db.deleteFrom("host_targets").execute();
    const after = await t.api("POST", "/api/v1/gc", {});
    expect(after.body.gc.removed.artifacts.count).toBe(1);
    const refused = await t.api("POST", "/api/v1/apps/shop/environments/production/rollback", { to: 2 });
    expect(refused.status).toBe(409);
    expect(refused.body.error.code).toBe("E_NO_RELEASE");
    expect(refused.body.error.message).toMatch(/removed by retention/);
    // The deploy that installed it is still in the history, with its record.
    expect((await t.store.deploys.get(second)).status).toBe("succeeded");
  }, 180_000);

  it("turnout gc: admin only; --dry-run says what would go and removes nothing; logs say they were removed", async () => {
    await start();
    const first = await t.waitForDeploy(await deploy(), 60_000);
    expect(first.status).toBe("succeeded");
    const second = await t.waitForDeploy(await deploy(), 60_000);
    expect(second.status).toBe("succeeded");
    const env = { TURNOUT_SERVER: t.url, TURNOUT_TOKEN: t.adminToken, HOME: work };

    const deployer = (await t.api("POST", "/api/v1/tokens", { name: "dev", role: "deployer" })).body.token;
    expect((await t.api("POST", "/api/v1/gc", { dryRun: true }, deployer)).status).toBe(403);
    const scoped = (
      await t.api("POST", "/api/v1/tokens", { name: "shop-admin", role: "admin", apps: ["shop"] })
    ).body.token;
    expect((await t.api("POST", "/api/v1/gc", { dryRun: true }, scoped)).status).toBe(403);
    expect((await t.api("POST", "/api/v1/gc", { dryRun: true, extra: 1 })).status).toBe(400);

    const dry = await turnout(["gc", "--dry-run"], { env });
    expect(dry.code, dry.stderr).toBe(0);
    expect(dry.stdout).toMatch(/^would remove \(dry run, nothing was removed\):/);
    expect(dry.stdout).toMatch(/^deploy logs\s+1\s+\d/m);
    expect((await t.store.logs.read(first.id, 0)).chunks.length).toBeGreaterThan(0);

    const json = await turnout(["gc", "--json"], { env });
    expect(json.code, json.stderr).toBe(0);
    const report = JSON.parse(json.stdout).gc;
    expect(report.dryRun).toBe(false);
    expect(report.removed.logs.count).toBe(1);

    const log = await t.api("GET", `/api/v1/deploys/${first.id}/log`);
    expect(log.body.chunks).toEqual([]);
    expect(log.body.prunedAt).toEqual(expect.any(String));
    expect((await t.api("GET", `/api/v1/deploys/${first.id}`)).body.deploy.logPrunedAt).toEqual(
      expect.any(String),
    );
    const logs = await turnout(["logs", `shop/production#${first.number}`], { env });
    expect(logs.code).toBe(0);
    expect(logs.stdout).toBe("");
    expect(logs.stderr).toMatch(/log removed by retention on \d{4}-\d\d-\d\d/);
    // The newest deploy's log is whole.
    expect(await logOf(second.id)).toContain("succeeded");
    expect(existsSync(path.join(t.dataDir, "artifacts"))).toBe(true);
  }, 180_000);
});
