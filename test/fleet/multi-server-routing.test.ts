import path from "node:path";
import pg from "pg";
import { beforeAll, describe, expect, it } from "vitest";
import { ensureBuilt } from "../helpers/built-cli.js";
import { waitForClusterHosts } from "../helpers/cluster.js";
import { type AgentProcess, currentOf, startAgent } from "../helpers/fleet.js";
import { deployAndWait, twoServerFleets } from "../helpers/two-server-fleet.js";

beforeAll(ensureBuilt, 180_000);

/**
 * Two real servers on one PostgreSQL, agents split between them: whichever
 * server runs a fleet deploy, it reaches every host, the hosts' output lands
 * in the deploy log, and an agent that moves to the other server between
 * deploys is reached there.
 */
describe("fleet deploys across two servers", () => {
  const startFleet = twoServerFleets();

  it("routes host operations to the server holding each agent", async () => {
    const fleet = await startFleet({
      prefix: "turnout-routing-",
      manifest: (repo) => `repo: ${JSON.stringify(repo)}
environments:
  production:
    deploy:
      provider: fleet
      hosts: { labels: { role: web } }
      restart: [sh, -c, 'echo "restart says hello from $(pwd -P)"']
      strategy: { canary: 1, batch: 2 }
`,
      hosts: [
        { name: "web-1", on: "a" },
        { name: "web-2", on: "b" },
        { name: "web-3", on: "b" },
      ],
    });
    const { cluster, a, b, agents, database, repo, enroll } = fleet;

    const deployOn = (server: typeof a) => deployAndWait(cluster, server, "production");

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
      agents.map((agent) => agent.name),
    );
    // New bytes, built on whichever server runs it and fetched by agents from the server they are on.
    await repo.commit({ VERSION: "2\n" }, "two");
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
