import { mkdirSync, writeFileSync } from "node:fs";
import { mkdtemp, readlink, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import pg from "pg";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { ensureBuilt } from "../helpers/built-cli.js";
import { type Cluster, startCluster, waitForClusterHosts } from "../helpers/cluster.js";
import { createTestDatabase, type TestDatabase } from "../helpers/databases.js";
import { type AgentProcess, assertConsistent, startAgent } from "../helpers/fleet.js";
import { makeRepo } from "../helpers/git-fixtures.js";
import { until } from "../helpers/wait.js";

beforeAll(ensureBuilt, 180_000);

/**
 * A deploy path through multi-server routing (issue 15): the deploy runs on
 * one server, the agent is held by the other, and the routed calls
 * (host_calls.args) carry the environment's path, so the release lands there.
 */
describe("a deploy path across two servers", () => {
  let root: string;
  let database: TestDatabase | undefined;
  let cluster: Cluster | undefined;
  let agents: AgentProcess[] = [];

  afterEach(async () => {
    for (const a of agents) await a.kill().catch(() => undefined);
    await assertConsistent(agents.map((a) => a.root));
    agents = [];
    await cluster?.stop();
    await database?.drop();
    await rm(root, { recursive: true, force: true });
  });

  it("routes every operation with the path to the server holding the agent", async () => {
    root = await mkdtemp(path.join(tmpdir(), "turnout-routing-path-"));
    database = await createTestDatabase("postgres");
    const configDir = path.join(root, "turnout.d");
    mkdirSync(configDir);
    const place = path.join(root, "www", "shop-staging");
    const repo = await makeRepo(path.join(root, "origin"));
    await repo.commit({ VERSION: "1\n" }, "one");
    writeFileSync(
      path.join(configDir, "shop.yaml"),
      `repo: ${JSON.stringify(repo.path)}
environments:
  staging:
    deploy:
      provider: fleet
      hosts: { labels: { role: web } }
      path: ${place}
      restart: [sh, -c, 'echo "restart in $(pwd -P)"']
`,
    );
    cluster = await startCluster({
      count: 2,
      root,
      configDir,
      databaseUrl: database.url!,
      shareArtifacts: true,
    });
    const [a, b] = cluster.servers as [Cluster["servers"][0], Cluster["servers"][0]];
    const enroll = (
      await cluster.api(a, "POST", "/api/v1/tokens", {
        name: "enroll",
        role: "agent",
        apps: ["shop"],
        labels: ["role=web"],
      })
    ).body.token;
    agents = [
      startAgent({
        serverUrl: b.url,
        token: enroll,
        name: "web-1",
        root: path.join(root, "web-1"),
        labels: { role: "web" },
      }),
    ];
    await waitForClusterHosts(cluster, ["web-1"]);

    const client = new pg.Client({ connectionString: database.url });
    await client.connect();
    const routedCalls = async () =>
      (await client.query<{ n: string }>("select count(*) as n from host_calls")).rows[0]!.n !== "0";
    // The deploy is asked of server A; whichever server claims it runs it. Only when A does are the
    // agent's operations routed through B: asked again (a new commit) in the rare case B took it.
    let release = "";
    for (let attempt = 1; attempt <= 3 && !(await routedCalls()); attempt++) {
      if (attempt > 1) await repo.commit({ VERSION: `${attempt}\n` }, `again ${attempt}`);
      const id = (await cluster.api(a, "POST", "/api/v1/apps/shop/environments/staging/deploys", {})).body
        .deploy.id as number;
      await until(
        async () =>
          ["succeeded", "failed", "cancelled"].includes(
            (await cluster!.api(a, "GET", `/api/v1/deploys/${id}`)).body.deploy.status,
          ),
        60_000,
        `deploy ${id} finished`,
      );
      const deploy = (await cluster.api(a, "GET", `/api/v1/deploys/${id}`)).body.deploy;
      const log = await (
        await fetch(`${a.url}/api/v1/deploys/${id}/log`, {
          headers: { authorization: `Bearer ${cluster.admin()}` },
        })
      ).text();
      expect(deploy.status, log).toBe("succeeded");
      release = path.basename(await readlink(path.join(place, "current")));
      expect(release).toMatch(/^[0-9a-f]{16}$/);
      expect(log).toContain(`restart in ${path.join(place, "releases", release)}`);
    }
    try {
      expect(await routedCalls()).toBe(true);
      const calls = await client.query<{ op: string; args: string; status: string }>(
        "select op, args, status from host_calls order by created_at",
      );
      const withApp = calls.rows.filter((r) => r.op !== "inventory");
      // Switch, restart and health check of a routed host are one call (activation.ts).
      expect(withApp.map((r) => r.op)).toEqual(expect.arrayContaining(["stage", "activate", "prune"]));
      for (const row of withApp) {
        expect(row.status).toBe("done");
        const args = JSON.parse(row.args);
        expect(row.op === "stage" ? args.spec.path : args.path, row.op).toBe(place);
      }
    } finally {
      await client.end();
    }
  });
});
