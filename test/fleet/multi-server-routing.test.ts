import { mkdirSync, writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import pg from "pg";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { ensureBuilt } from "../helpers/built-cli.js";
import { type Cluster, startCluster, waitForClusterHosts } from "../helpers/cluster.js";
import { createTestDatabase, type TestDatabase } from "../helpers/databases.js";
import { type AgentProcess, assertConsistent, currentOf, startAgent } from "../helpers/fleet.js";
import { makeRepo } from "../helpers/git-fixtures.js";
import { until } from "../helpers/wait.js";

beforeAll(ensureBuilt, 180_000);

/**
 * Two real servers on one PostgreSQL, agents split between them: whichever
 * server runs a fleet deploy, it reaches every host, the hosts' output lands
 * in the deploy log, and an agent that moves to the other server between
 * deploys is reached there.
 */
describe("fleet deploys across two servers", () => {
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

  it("routes host operations to the server holding each agent", async () => {
    root = await mkdtemp(path.join(tmpdir(), "turnout-routing-"));
    database = await createTestDatabase("postgres");
    const configDir = path.join(root, "turnout.d");
    mkdirSync(configDir);
    const repo = await makeRepo(path.join(root, "origin"));
    await repo.commit({ VERSION: "1\n" }, "one");
    writeFileSync(
      path.join(configDir, "shop.yaml"),
      `repo: ${JSON.stringify(repo.path)}
environments:
  production:
    deploy:
      provider: fleet
      hosts: { labels: { role: web } }
      restart: [sh, -c, 'echo "restart says hello from $(pwd -P)"']
      strategy: { canary: 1, batch: 2 }
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
    const spec = [
      { name: "web-1", server: a },
      { name: "web-2", server: b },
      { name: "web-3", server: b },
    ];
    agents = spec.map(({ name, server }) =>
      startAgent({
        serverUrl: server.url,
        token: enroll,
        name,
        root: path.join(root, name),
        labels: { role: "web" },
      }),
    );
    await waitForClusterHosts(
      cluster,
      spec.map((s) => s.name),
    );

    const deployOn = async (server: typeof a) => {
      const id = (await cluster!.api(server, "POST", "/api/v1/apps/shop/environments/production/deploys", {}))
        .body.deploy.id as number;
      await until(
        async () =>
          ["succeeded", "failed", "cancelled"].includes(
            (await cluster!.api(server, "GET", `/api/v1/deploys/${id}`)).body.deploy.status,
          ),
        60_000,
        `deploy ${id} finished`,
      );
      const deploy = (await cluster!.api(server, "GET", `/api/v1/deploys/${id}`)).body.deploy;
      const log = await (
        await fetch(`${server.url}/api/v1/deploys/${id}/log`, {
          headers: { authorization: `Bearer ${cluster!.admin()}` },
        })
      ).text();
      return { deploy, log };
    };

    const first = await deployOn(a);
    expect(first.deploy.status, first.log).toBe("succeeded");
    const release = await currentOf(agents[0]!.root, "shop");
    expect(release).toMatch(/^[0-9a-f]{16}$/);
    for (const agent of agents) {
      expect(await currentOf(agent.root, "shop")).toBe(release);
      // The restart's output, from each host (whichever server holds it), is in the deploy log.
      expect(first.log).toContain(`restart says hello from ${path.join(agent.root, "shop", "releases")}`);
    }

    // Calls were routed (the deploy ran on one server, agents sit on both), each executed once.
    const client = new pg.Client({ connectionString: database.url });
    await client.connect();
    try {
      const routed = await client.query<{ status: string; host: string; n: string }>(
        "select status, host, count(*) as n from host_calls group by status, host order by host",
      );
      expect(routed.rows.length).toBeGreaterThan(0);
      expect(routed.rows.every((r) => r.status === "done")).toBe(true);
      // One caller (the server that ran the deploy), never calling itself.
      const pairs = await client.query<{ target: string; caller: string }>(
        "select distinct target, caller from host_calls",
      );
      expect(new Set(pairs.rows.map((r) => r.caller)).size).toBe(1);
      for (const row of pairs.rows) expect(row.target).not.toBe(row.caller);
    } finally {
      await client.end();
    }

    // web-1 moves from A to B; web-2 from B to A. The next deploy reaches them where they are now.
    agents[0] = await restartAt(agents[0]!, b.url, enroll);
    agents[1] = await restartAt(agents[1]!, a.url, enroll);
    await waitForClusterHosts(
      cluster,
      spec.map((s) => s.name),
    );
    // Only contents the servers already hold (a new file with known bytes): see startCluster's shareArtifacts.
    await repo.commit({ COPY: "1\n" }, "two");
    const second = await deployOn(b);
    expect(second.deploy.status, second.log).toBe("succeeded");
    const release2 = await currentOf(agents[0]!.root, "shop");
    expect(release2).not.toBe(release);
    for (const agent of agents) expect(await currentOf(agent.root, "shop")).toBe(release2);
  });
});

/** The same agent (name and root), now pointed at another server. */
async function restartAt(agent: AgentProcess, serverUrl: string, token: string): Promise<AgentProcess> {
  await agent.kill();
  return startAgent({ serverUrl, token, name: agent.name, root: agent.root, labels: { role: "web" } });
}
