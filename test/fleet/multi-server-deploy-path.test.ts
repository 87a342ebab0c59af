import { readlink } from "node:fs/promises";
import path from "node:path";
import pg from "pg";
import { beforeAll, describe, expect, it } from "vitest";
import { ensureBuilt } from "../helpers/built-cli.js";
import { deployAndWait, twoServerFleets } from "../helpers/two-server-fleet.js";

beforeAll(ensureBuilt, 180_000);

/**
 * A deploy path through multi-server routing (issue 15): the deploy runs on
 * one server, the agent is held by the other, and the routed calls
 * (host_calls.args) carry the environment's path, so the release lands there.
 */
describe("a deploy path across two servers", () => {
  const startFleet = twoServerFleets();

  it("routes every operation with the path to the server holding the agent", async () => {
    const placeIn = (root: string) => path.join(root, "www", "shop-staging");
    const fleet = await startFleet({
      prefix: "turnout-routing-path-",
      manifest: (repo, root) => `repo: ${JSON.stringify(repo)}
environments:
  staging:
    deploy:
      provider: fleet
      hosts: { labels: { role: web } }
      path: ${placeIn(root)}
      restart: [sh, -c, 'echo "restart in $(pwd -P)"']
`,
      hosts: [{ name: "web-1", on: "b" }],
    });
    const { cluster, a, database, repo } = fleet;
    const place = placeIn(fleet.root);

    const client = new pg.Client({ connectionString: database.url });
    await client.connect();
    const routedCalls = async () =>
      (await client.query<{ n: string }>("select count(*) as n from host_calls")).rows[0]!.n !== "0";
    // The deploy is asked of server A; whichever server claims it runs it. Only when A does are the
    // agent's operations routed through B: asked again (a new commit) in the rare case B took it.
    let release = "";
    for (let attempt = 1; attempt <= 3 && !(await routedCalls()); attempt++) {
      if (attempt > 1) await repo.commit({ VERSION: `${attempt}\n` }, `again ${attempt}`);
      const { deploy, log } = await deployAndWait(cluster, a, "staging");
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
