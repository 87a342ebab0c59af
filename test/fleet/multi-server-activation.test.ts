import { writeFileSync } from "node:fs";
import path from "node:path";
import pg from "pg";
import { beforeAll, describe, expect, it } from "vitest";
import { ensureBuilt } from "../helpers/built-cli.js";
import { currentOf } from "../helpers/fleet.js";
import { deployAndWait, twoServerFleets } from "../helpers/two-server-fleet.js";

beforeAll(ensureBuilt, 180_000);

/**
 * A host held by another server is switched, restarted and health-checked
 * by one routed call (providers/fleet/activation.ts): the holder makes one
 * `activate` agent call (three calls to an older agent) and answers once. The deploy's records, log and
 * failure handling are those of three single calls: a host whose health
 * check fails there is recorded switched, then failed, switched back and
 * depooled, and the deploy rolls back.
 */
describe("routed activation", () => {
  const startFleet = twoServerFleets();

  it("is one call per routed host, and a failing health check there still rolls the host back", async () => {
    // The health check fails on a host whose root holds a file named `unhealthy`
    // (run in <root>/shop/releases/<id>: three levels below the root).
    // web-1 on A (where the deploys run), web-2 and web-3 on B: reached through routed calls.
    const fleet = await startFleet({
      prefix: "turnout-activation-",
      manifest: (repo) => `repo: ${JSON.stringify(repo)}
environments:
  production:
    deploy:
      provider: fleet
      hosts: { labels: { role: web } }
      restart: [sh, -c, 'echo "restarted in $(pwd -P)"']
      health: { command: [sh, -c, 'test ! -e ../../../unhealthy'], retries: 0, interval: 100ms }
      strategy: { canary: 1, batch: 2 }
`,
      hosts: [
        { name: "web-1", on: "a" },
        { name: "web-2", on: "b" },
        { name: "web-3", on: "b" },
      ],
    });
    const { cluster, a, agents, database, repo } = fleet;
    const deploy = () => deployAndWait(cluster, a, "production");
    const client = new pg.Client({ connectionString: database.url });
    await client.connect();
    const callsOf = async (deployId: number) =>
      (
        await client.query<{ host: string; op: string; status: string }>(
          "select host, op, status from host_calls where deploy_id = $1 order by created_at",
          [deployId],
        )
      ).rows;
    const stepsOf = async (deployId: number) =>
      (
        await client.query<{ name: string; step: string; switched: number; error: string | null }>(
          `select h.name, dh.step, dh.switched, dh.error from deploy_hosts dh join hosts h on h.id = dh.host_id
           where dh.deploy_id = $1 order by h.name`,
          [deployId],
        )
      ).rows;

    // The deploy is asked of server A, but whichever server claims it runs it: the hosts routed
    // (through host_calls) are B's only when A ran it. When B took it (its calls name web-1),
    // it is asked again with a new commit, as in multi-server-deploy-path.test.ts.
    const deployOnA = async (label: string) => {
      for (let attempt = 1; ; attempt++) {
        if (attempt > 1) await repo.commit({ AGAIN: `${label} ${attempt}\n` }, `${label}, again`);
        const result = await deploy();
        const ranOnB = (await callsOf(result.id)).some((c) => c.host === "web-1");
        if (!ranOnB) return result;
        if (attempt === 5) throw new Error(`server B ran all five deploys of ${label}`);
        console.log(`deploy ${label}: server B ran it (${result.id}); asking again`);
      }
    };
    try {
      const first = await deployOnA("one");
      expect(first.deploy.status, first.log).toBe("succeeded");
      const release1 = await currentOf(agents[0]!.root, "shop");
      for (const agent of agents) expect(await currentOf(agent.root, "shop")).toBe(release1);
      // Each routed host: staged, then activated in one call (no switchTo, run or health call of its own).
      const calls = await callsOf(first.id);
      for (const host of ["web-2", "web-3"]) {
        const ops = calls.filter((c) => c.host === host).map((c) => c.op);
        expect(
          ops.filter((op) => op === "activate"),
          `${host}: ${ops.join(", ")}`,
        ).toHaveLength(1);
        expect(ops.filter((op) => ["switchTo", "run", "health"].includes(op))).toEqual([]);
      }
      expect(calls.some((c) => c.host === "web-1")).toBe(false);
      expect(calls.every((c) => c.status === "done")).toBe(true);
      // The holder's output (the restart) is in the deploy log, with the caller's own lines about the host.
      for (const agent of agents) {
        expect(first.log).toContain(`restarted in ${path.join(agent.root, "shop", "releases")}`);
      }
      expect(first.log).toMatch(/web-2.*switched current to [0-9a-f]{16}/);
      expect(first.log).toMatch(/web-3.*healthy/);
      expect((await stepsOf(first.id)).map((h) => [h.name, h.step, h.switched])).toEqual([
        ["web-1", "healthy", 1],
        ["web-2", "healthy", 1],
        ["web-3", "healthy", 1],
      ]);

      // A new release whose health check fails on web-3 (routed): web-3 is switched, fails,
      // goes back to release 1 and out of the pool; the deploy rolls the others back too.
      writeFileSync(path.join(agents[2]!.root, "unhealthy"), "");
      await repo.commit({ VERSION: "2\n" }, "two");
      const second = await deployOnA("two");
      expect(second.deploy.status, second.log).toBe("failed");
      expect(second.deploy.errorCode, second.log).toBe("E_ROLLED_BACK");
      for (const agent of agents) expect(await currentOf(agent.root, "shop"), agent.name).toBe(release1);
      const steps = await stepsOf(second.id);
      const web3 = steps.find((h) => h.name === "web-3")!;
      expect(web3.step, second.log).toBe("depooled");
      expect(web3.error).toBe("health check failed");
      expect(second.log).toMatch(/web-3.*failed: health check failed/);
      expect(second.log).toMatch(/web-3.*switched back to/);
      // The activation failed as a whole (one call), the switch back was single calls.
      const web3Ops = (await callsOf(second.id)).filter((c) => c.host === "web-3").map((c) => c.op);
      expect(web3Ops.filter((op) => op === "activate")).toHaveLength(1);
      expect(web3Ops).toContain("switchTo");
    } finally {
      await client.end();
    }
  });
});
