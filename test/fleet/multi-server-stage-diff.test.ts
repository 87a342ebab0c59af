import { readFile } from "node:fs/promises";
import path from "node:path";
import pg from "pg";
import { beforeAll, describe, expect, it } from "vitest";
import { ensureBuilt } from "../helpers/built-cli.js";
import { deployAndWait, twoServerFleets } from "../helpers/two-server-fleet.js";

beforeAll(ensureBuilt, 180_000);

/**
 * A routed stage call carries the whole manifest: the server running the
 * deploy does not know which manifests an agent another server holds keeps.
 * The holder does, and sends the agent the difference (agent protocol 2),
 * as it would for a deploy of its own: a one-file change is a few hundred
 * bytes to the host, not the whole tree's listing.
 */
describe("a routed stage call", () => {
  const startFleet = twoServerFleets();

  it("reaches the agent as the difference from a manifest it keeps", async () => {
    const placeIn = (root: string) => path.join(root, "www", "shop");
    const fleet = await startFleet({
      prefix: "turnout-routed-diff-",
      manifest: (repo, root) => `repo: ${JSON.stringify(repo)}
environments:
  staging:
    deploy:
      provider: fleet
      hosts: { labels: { role: web } }
      path: ${placeIn(root)}
`,
      hosts: [{ name: "web-1", on: "b" }],
    });
    const { cluster, a, database, repo } = fleet;
    const client = new pg.Client({ connectionString: database.url });
    await client.connect();
    try {
      const routedStages = async () =>
        (
          await client.query<{ result: string | null }>(
            "select result from host_calls where op = 'stage' and status = 'done' order by created_at",
          )
        ).rows.map((r) => JSON.parse(r.result ?? "null") as { manifest?: string });
      // The deploy is asked of server A; whichever server claims it runs it. Only when A does is the
      // stage routed to B, and only once the host keeps a manifest can it be a difference: deployed
      // again (a one-file change each time) until a routed stage came after the first release.
      for (let attempt = 1; attempt <= 6; attempt++) {
        // A tree of a few files: a difference as large as the whole listing is never sent.
        if (attempt === 1) await repo.commit({ "a.txt": "a\n", "b.txt": "b\n", "c.txt": "c\n" }, "a tree");
        else await repo.commit({ VERSION: `${attempt}\n` }, `change ${attempt}`);
        const { deploy, log } = await deployAndWait(cluster, a, "staging");
        expect(deploy.status, log).toBe("succeeded");
        if (attempt > 1 && (await routedStages()).some((r) => r.manifest === "diff")) break;
      }
      const stages = await routedStages();
      expect(stages.map((r) => r.manifest)).toContain("diff");
      // The release staged from the difference is the commit deployed last, file for file.
      const version = (await repo.git("show", "HEAD:VERSION")).trim();
      expect((await readFile(path.join(placeIn(fleet.root), "current", "VERSION"), "utf8")).trim()).toBe(
        version,
      );
    } finally {
      await client.end();
    }
  });
});
