import { randomBytes } from "node:crypto";
import { readdirSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { PrefetchGrants } from "../../src/artifacts/prefetch-grants.js";
import { ensureBuilt } from "../helpers/built-cli.js";
import {
  type AgentProcess,
  assertConsistent,
  currentOf,
  startAgent,
  waitForHosts,
} from "../helpers/fleet.js";
import { startTurnout, type TestTurnout } from "../helpers/turnout.js";

beforeAll(ensureBuilt, 120_000);

/**
 * Prefetch (issue 15 point 3): agents of protocol 3 are offered the blobs of
 * a release while the server is still reading and packing its tree, and
 * fetch them into their blob cache; the stage call then finds them there.
 * The real server in-process, real `turnout agent` processes, a real git
 * repository read without a checkout (no build script: the tree is the
 * artifact). The release is 20 MiB in 40 files, so the server packs it in
 * three rounds (PREFETCH_PACK_BYTES) and offers each as it is committed.
 */
const manifest = `repo: "{repo}"
environments:
  production:
    deploy:
      provider: fleet
      hosts: { labels: { role: web } }
      strategy: { canary: 1, batch: 1 }
`;

function bigRelease(): Record<string, string> {
  const files: Record<string, string> = {};
  // Hex text: 512 KiB of characters that git cannot delta or compress away much.
  for (let i = 0; i < 40; i++) files[`assets/blob-${i}.txt`] = randomBytes(256 * 1024).toString("hex");
  return files;
}

/** A grant registry that offers but never lets a host read: every prefetch download is refused. */
class RefusingGrants extends PrefetchGrants {
  refused = 0;
  override allows(): boolean {
    this.refused++;
    return false;
  }
}

/** Blob names in an agent's cache (plain 0444 ones: 64 hex digits). */
function cachedBlobs(root: string): Set<string> {
  const out = new Set<string>();
  const dir = path.join(root, ".turnout", "blobs");
  for (const shard of readdirSafe(dir)) {
    if (!/^[0-9a-f]{2}$/.test(shard)) continue;
    for (const name of readdirSafe(path.join(dir, shard))) if (/^[0-9a-f]{64}$/.test(name)) out.add(name);
  }
  return out;
}

function readdirSafe(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

describe("fleet prefetch while the artifact is built", () => {
  let t: TestTurnout | undefined;
  let work: string;
  let agents: AgentProcess[] = [];

  afterEach(async () => {
    for (const a of agents) await a.kill().catch(() => undefined);
    await assertConsistent(agents.map((a) => a.root));
    agents = [];
    await t?.stop();
    t = undefined;
    await rm(work, { recursive: true, force: true });
  });

  async function start(hosts: { name: string; maxProtocol?: number }[], grants?: PrefetchGrants) {
    t = await startTurnout({ manifest, ...(grants ? { prefetchGrants: grants } : {}) });
    work = await mkdtemp(path.join(tmpdir(), "turnout-prefetch-"));
    const token = (
      await t.api("POST", "/api/v1/tokens", {
        name: "enroll",
        role: "agent",
        apps: ["shop"],
        labels: ["role=web"],
      })
    ).body.token;
    agents = hosts.map((h) =>
      startAgent({
        serverUrl: t!.url,
        token,
        name: h.name,
        root: path.join(work, h.name),
        labels: { role: "web" },
        ...(h.maxProtocol ? { extraArgs: ["--max-protocol", String(h.maxProtocol)] } : {}),
      }),
    );
    await waitForHosts(
      t.api,
      agents.map((a) => a.name),
    );
  }

  const deploy = async () =>
    t!.waitForDeploy(
      (await t!.api("POST", "/api/v1/apps/shop/environments/production/deploys", {})).body.deploy.id,
      120_000,
    );
  const logOf = async (id: number) => (await t!.store.logs.read(id, 0)).chunks.map((c) => c.text).join("");
  /** What the host's stage call found: "fetching X of Y blobs". */
  const stageLine = (log: string, host: string) => {
    const match = new RegExp(`\\[${host}\\] staging \\S+: \\d+ files, fetching (\\d+) of (\\d+) blobs`).exec(
      log,
    );
    expect(match, `no staging line for ${host} in:\n${log}`).not.toBeNull();
    return { fetched: Number(match![1]), needed: Number(match![2]) };
  };

  it("hosts hold the release's blobs before their stage call looks, and staging fetches only the rest", async () => {
    await start([{ name: "web-1" }, { name: "web-2" }]);
    await t!.repo.commit(bigRelease(), "a 20 MiB release");
    const done = await deploy();
    const log = await logOf(done.id);
    expect(done.status, log).toBe("succeeded");

    const release = await t!.store.releases.current("shop", "production");
    const manifestOf = await t!.api("GET", `/api/v1/artifacts/${release!.artifact}/manifest`);
    const digests = new Set(
      (manifestOf.body.entries as any[]).filter((e) => e.type === "file").map((e) => e.sha256 as string),
    );
    for (const a of agents) {
      // The first round's call is sent as soon as its pack is committed, before the tree is read whole.
      expect(log).toMatch(
        new RegExp(`==> prefetched to ${a.name} while the artifact was built: [1-9]\\d* blob`),
      );
      const { fetched, needed } = stageLine(log, a.name);
      expect(needed).toBeGreaterThanOrEqual(40);
      expect(fetched).toBeLessThan(needed);
      expect(await currentOf(a.root, "shop")).toBe(release!.artifact!.slice(0, 16));
      const cached = cachedBlobs(a.root);
      for (const digest of digests) expect(cached.has(digest)).toBe(true);
    }
    expect(log).not.toContain("prefetch to");
  }, 180_000);

  it("a prefetch that fails (downloads refused) does not fail the deploy: staging fetches everything", async () => {
    const grants = new RefusingGrants();
    await start([{ name: "web-1" }], grants);
    await t!.repo.commit(bigRelease(), "a 20 MiB release");
    const done = await deploy();
    const log = await logOf(done.id);
    expect(done.status, log).toBe("succeeded");
    expect(grants.refused).toBeGreaterThan(0);
    expect(log).toMatch(/==> prefetch to web-1 failed \(staging fetches what it lacks\): .*HTTP 404/);
    expect(log).not.toContain("==> prefetched to web-1");
    const { fetched, needed } = stageLine(log, "web-1");
    expect(fetched).toBe(needed);
    expect(grants.size).toBe(0);
  }, 180_000);

  it("an agent of protocol 2 gets no prefetch call and still deploys; a protocol 3 agent beside it does", async () => {
    await start([{ name: "web-new" }, { name: "web-old", maxProtocol: 2 }]);
    await t!.repo.commit(bigRelease(), "a 20 MiB release");
    const done = await deploy();
    const log = await logOf(done.id);
    expect(done.status, log).toBe("succeeded");
    const old = stageLine(log, "web-old");
    expect(old.fetched).toBe(old.needed);
    expect(log).not.toMatch(/prefetch(ed)? to web-old/);
    expect(stageLine(log, "web-new").fetched).toBeLessThan(stageLine(log, "web-new").needed);
    const oldAgent = agents.find((a) => a.name === "web-old")!;
    expect(oldAgent.output()).toMatch(/connected to \S+ \(host id \d+, protocol 2\)/);
    // Never dropped for a message it could not read.
    expect(oldAgent.output()).not.toMatch(/protocol error|invalid message/i);
    expect(await currentOf(oldAgent.root, "shop")).toBe(
      (await t!.store.releases.current("shop", "production"))!.artifact!.slice(0, 16),
    );
  }, 180_000);
});
