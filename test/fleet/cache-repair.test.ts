import { createHash } from "node:crypto";
import { chmodSync, readdirSync, readFileSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { ensureBuilt } from "../helpers/built-cli.js";
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
 * A host's cache repairs itself (issue 15, point 4). One real agent process
 * keeps running while parts of its root are deleted or damaged by hand
 * between deploys: a blob, a shard directory, the whole blob cache, a
 * truncated blob, a blob with other bytes of the same size, the live
 * release's directory, a file of the live release. Every next deploy (or
 * reconcile) succeeds and the host serves exactly the release's bytes.
 */
const MANIFEST = `repo: "{repo}"
environments:
  production:
    deploy:
      provider: fleet
      hosts: { labels: { role: web } }
      restart: [sh, -c, 'echo restarted >> "$TURNOUT_RELEASE_DIR/../../restarts"']
`;

const sha256 = (text: string) => createHash("sha256").update(text).digest("hex");

describe("a host's blob cache and releases repair themselves", () => {
  let t: TestTurnout;
  let work: string;
  let agent: AgentProcess | undefined;

  afterEach(async () => {
    await agent?.kill().catch(() => undefined);
    if (agent) await assertConsistent([agent.root]);
    agent = undefined;
    await t?.stop();
    await rm(work, { recursive: true, force: true });
  });

  async function start() {
    t = await startTurnout({ manifest: MANIFEST });
    work = await mkdtemp(path.join(tmpdir(), "turnout-repair-"));
    const token = (
      await t.api("POST", "/api/v1/tokens", { name: "enroll", role: "agent", labels: ["role=web"] })
    ).body.token;
    agent = startAgent({
      serverUrl: t.url,
      token,
      name: "web-1",
      root: path.join(work, "web-1"),
      labels: { role: "web" },
    });
    await waitForHosts(t.api, ["web-1"]);
    return agent;
  }

  const logOf = async (id: number) => (await t.store.logs.read(id, 0)).chunks.map((c) => c.text).join("");

  async function finish(id: number) {
    const done = await t.waitForDeploy(id, 60_000);
    const log = await logOf(id);
    expect(done.status, log).toBe("succeeded");
    return { done, log };
  }

  /** Commits `files`, deploys the head, and checks the host serves exactly the tree. */
  async function deployCommit(files: Record<string, string>, tree: Record<string, string>) {
    await t.repo.commit(files, "change");
    const res = await t.api("POST", "/api/v1/apps/shop/environments/production/deploys", {});
    expect(res.status).toBe(202);
    const result = await finish(res.body.deploy.id);
    expectServes(tree);
    return result;
  }

  function releaseDir(): string {
    return path.join(agent!.root, "shop", "current");
  }

  function expectServes(tree: Record<string, string>) {
    for (const [file, content] of Object.entries(tree))
      expect(readFileSync(path.join(releaseDir(), file), "utf8"), file).toBe(content);
  }

  const cacheDir = () => path.join(agent!.root, ".turnout", "blobs");
  const blobOf = (content: string) => {
    const digest = sha256(content);
    return path.join(cacheDir(), digest.slice(0, 2), digest);
  };

  /** Blobs a deploy brought to the host: prefetched while its artifact was built, and fetched at staging. */
  function fetched(log: string): { total: number; files: number } {
    const staging = /staging [0-9a-f]{16}: (\d+) files, fetching (\d+) of \d+ blobs/.exec(log);
    expect(staging, log).not.toBeNull();
    const prefetched = /prefetched to \S+ while the artifact was built: (\d+) blob\(s\)/.exec(log);
    return { total: Number(staging![2]) + Number(prefetched?.[1] ?? 0), files: Number(staging![1]) };
  }

  async function driftOf(): Promise<{ drifted: boolean; current: string | null }> {
    const body = (await t.api("GET", "/api/v1/apps/shop/environments/production/hosts")).body;
    return body.hosts[0];
  }

  it("refetches blobs deleted or damaged in the cache, and shard directories or the whole cache deleted under a running agent", async () => {
    await start();
    const tree: Record<string, string> = {
      VERSION: "1.0.0\n",
      "a.txt": "alpha content\n",
      "b.txt": "bravo content\n",
      "c.txt": "charlie content\n",
      "d.txt": "delta content\n",
    };
    await deployCommit(
      { "a.txt": tree["a.txt"]!, "b.txt": tree["b.txt"]!, "c.txt": tree["c.txt"]!, "d.txt": tree["d.txt"]! },
      tree,
    );

    // 1. One blob deleted: fetched again by the next deploy, which keeps using it.
    rmSync(blobOf(tree["a.txt"]!));
    tree["VERSION"] = "1.0.1\n";
    let { log } = await deployCommit({ VERSION: tree["VERSION"] }, tree);
    // The new VERSION and the deleted a.txt, whether prefetched while the artifact was built or at staging.
    expect(fetched(log).total).toBe(2);
    expect(readFileSync(blobOf(tree["a.txt"]!), "utf8")).toBe(tree["a.txt"]);

    // 2. A shard directory deleted: made again (it used to be remembered as existing).
    rmSync(path.dirname(blobOf(tree["b.txt"]!)), { recursive: true });
    tree["VERSION"] = "1.0.2\n";
    tree["e.txt"] = "echo, in the same shard as nothing in particular\n";
    await deployCommit({ VERSION: tree["VERSION"], "e.txt": tree["e.txt"] }, tree);
    expect(readFileSync(blobOf(tree["b.txt"]!), "utf8")).toBe(tree["b.txt"]);

    // 3. The whole blob cache deleted: every blob of the next release is fetched again, and named again.
    rmSync(cacheDir(), { recursive: true });
    tree["VERSION"] = "1.0.3\n";
    ({ log } = await deployCommit({ VERSION: tree["VERSION"] }, tree));
    // Every file of the release (deploy.sh of the test repository too) is fetched (prefetch names only the new one).
    expect(fetched(log).total).toBe(fetched(log).files);
    for (const content of Object.values(tree)) expect(readFileSync(blobOf(content), "utf8")).toBe(content);

    // 4. A truncated blob (which the live release shares): found by its size, fetched again.
    const c = blobOf(tree["c.txt"]!);
    chmodSync(c, 0o644);
    truncateSync(c, 3);
    chmodSync(c, 0o444);
    tree["VERSION"] = "1.0.4\n";
    ({ log } = await deployCommit({ VERSION: tree["VERSION"] }, tree));
    expect(log).toMatch(
      /blob cache: 1 damaged blob\(s\) removed, fetched again: [0-9a-f]{12} \(3 bytes, not 16\)/,
    );

    // 5. Other bytes of the same size: found by the digest, fetched again.
    const d = blobOf(tree["d.txt"]!);
    chmodSync(d, 0o644);
    writeFileSync(d, "DELTA CONTENT\n");
    chmodSync(d, 0o444);
    tree["VERSION"] = "1.0.5\n";
    ({ log } = await deployCommit({ VERSION: tree["VERSION"] }, tree));
    expect(log).toMatch(/fetched again: [0-9a-f]{12} \(bytes do not match the digest\)/);
    expect(readFileSync(d, "utf8")).toBe(tree["d.txt"]);

    // Every blob in the cache holds what its name says.
    for (const shard of readdirSync(cacheDir()).filter((s) => /^[0-9a-f]{2}$/.test(s)))
      for (const name of readdirSync(path.join(cacheDir(), shard))) {
        const bytes = readFileSync(path.join(cacheDir(), shard, name));
        expect(createHash("sha256").update(bytes).digest("hex"), name).toBe(name.slice(0, 64));
      }
    expect((await driftOf()).drifted).toBe(false);
  });

  it("shows a deleted live release as drift, and a reconcile stages it again; a damaged live release is repaired by a reconcile", async () => {
    await start();
    const tree: Record<string, string> = {
      VERSION: "2.0.0\n",
      "app.txt": "the app\n",
      "lib/util.txt": "a helper\n",
    };
    await deployCommit(
      { VERSION: tree["VERSION"]!, "app.txt": tree["app.txt"]!, "lib/util.txt": tree["lib/util.txt"]! },
      tree,
    );
    const id = await currentOf(agent!.root, "shop");
    expect((await driftOf()).drifted).toBe(false);

    // The live release's directory deleted by hand: `current` names nothing, the host reports no release.
    rmSync(path.join(agent!.root, "shop", "releases", id!), { recursive: true });
    await until(async () => (await driftOf()).drifted, 20_000, "the host shown drifted");
    expect((await driftOf()).current).toBeNull();
    let res = await t.api("POST", "/api/v1/apps/shop/environments/production/reconcile", {});
    expect(res.status).toBe(202);
    let { log } = await finish(res.body.deploy.id);
    expect(log).toContain("[web-1] switched current to");
    expectServes(tree);
    expect(await currentOf(agent!.root, "shop")).toBe(id);
    await until(async () => !(await driftOf()).drifted, 20_000, "the host no longer drifted");

    // A file of the live release deleted, another changed through the release (its inode is the cache's):
    // the reconcile finds the release damaged, stages it again, and restarts the host on it.
    const restarts = () =>
      readFileSync(path.join(agent!.root, "shop", "restarts"), "utf8").split("\n").length;
    const before = restarts();
    rmSync(path.join(releaseDir(), "lib", "util.txt"));
    const app = path.join(releaseDir(), "app.txt");
    chmodSync(app, 0o644);
    writeFileSync(app, "THE APP\n");
    chmodSync(app, 0o444);
    res = await t.api("POST", "/api/v1/apps/shop/environments/production/reconcile", {});
    ({ log } = await finish(res.body.deploy.id));
    expect(log).toMatch(/release [0-9a-f]{16} is damaged on this host \(.*lib\/util\.txt: missing/);
    expect(log).toContain("[web-1] repaired (");
    expectServes(tree);
    expect(restarts()).toBe(before + 1);
    expect(await currentOf(agent!.root, "shop")).toBe(id);

    // A whole release again: the next reconcile leaves it alone.
    res = await t.api("POST", "/api/v1/apps/shop/environments/production/reconcile", {});
    ({ log } = await finish(res.body.deploy.id));
    expect(log).toContain("already staged");
    expect(log).toContain("left alone");
    expect(restarts()).toBe(before + 1);
  });
});
