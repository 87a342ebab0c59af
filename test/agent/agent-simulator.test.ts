import { createHash } from "node:crypto";
import { PassThrough, Readable } from "node:stream";
import { afterEach, describe, expect, it } from "vitest";
import { AgentSimulator } from "../../src/agent/simulator/agent-simulator.js";
import { SimHostOps } from "../../src/agent/simulator/sim-host-ops.js";
import type { BlobSource } from "../../src/providers/fleet/host-ops.js";
import { waitForHosts } from "../helpers/fleet.js";
import { startTurnout, type TestTurnout } from "../helpers/turnout.js";

/**
 * The agent simulator of the control-plane benchmark (bench/scale.js) must
 * be a fair stand-in for real agents: these tests enroll simulated hosts
 * with the real server and run real fleet deploys to them.
 */
const manifest = `repo: "{repo}"
environments:
  production:
    deploy:
      provider: fleet
      hosts: { labels: { role: sim } }
      build_script: |
        mkdir -p dist
        cp VERSION dist/VERSION
      artifact: dist
      restart: [systemctl, restart, shop]
      health: { command: [curl, -f, "http://127.0.0.1/"], retries: 0, interval: 100ms }
      strategy: { canary: 1, batch: 50% }
`;

const sha = (text: string) => createHash("sha256").update(text).digest("hex");
const noLog = () => undefined;
const never = new AbortController().signal;

describe("agent simulator against the real server", () => {
  let t: TestTurnout | undefined;
  let sim: AgentSimulator | undefined;

  afterEach(async () => {
    await sim?.stop();
    sim = undefined;
    await t?.stop();
    t = undefined;
  });

  it("enrolls N hosts with an enrollment token, and fleet deploys to them succeed", async () => {
    t = await startTurnout({ manifest });
    const { token } = (
      await t.api("POST", "/api/v1/tokens", {
        name: "sim",
        role: "agent",
        apps: ["shop"],
        labels: ["role=sim"],
      })
    ).body;
    sim = new AgentSimulator({
      servers: [t.url],
      token,
      count: 12,
      labels: { role: "sim" },
      stageDelayMs: 20,
    });
    await sim.start();
    await sim.waitConnected(30_000);
    const names = sim.hosts.map((h) => h.name);
    expect(names[0]).toBe("sim-01");
    await waitForHosts(t.api, names);
    // Enrolled: each host got its own token and the token's grant.
    const listed = (await t.api("GET", "/api/v1/hosts")).body.hosts as any[];
    expect(listed.filter((h) => h.kind === "agent" && h.connected)).toHaveLength(12);

    const deploy = async () =>
      t!.waitForDeploy(
        (await t!.api("POST", "/api/v1/apps/shop/environments/production/deploys", {})).body.deploy.id,
        60_000,
      );
    const first = await deploy();
    expect(first.status).toBe("succeeded");
    const release = (await t.store.releases.current("shop", "production"))!.artifact!.slice(0, 16);
    const steps = (await t.api("GET", `/api/v1/deploys/${first.id}/hosts`)).body.hosts as any[];
    expect(steps).toHaveLength(12);
    for (const step of steps) {
      expect([step.step, step.switched]).toEqual(["healthy", true]);
      // The one file was really downloaded from the server (and verified).
      expect(step.bytesFetched).toBe("1.0.0\n".length);
    }
    for (const host of sim.hosts) {
      expect(await host.ops.inventory()).toEqual([
        { app: "shop", releases: [release], current: release, slots: {} },
      ]);
    }

    await t.repo.commit({ VERSION: "1.0.1\n" }, "one change");
    const second = await deploy();
    expect(second.status).toBe("succeeded");
    const next = (await t.store.releases.current("shop", "production"))!.artifact!.slice(0, 16);
    expect(next).not.toBe(release);
    // The hosts reported what they hold (heartbeats after the switch): the server sees no drift.
    const drift = async () =>
      ((await t!.api("GET", "/api/v1/apps/shop/environments/production/hosts")).body.hosts as any[]).map(
        (h) => h.drifted,
      );
    await expect.poll(drift, { timeout: 15_000 }).toEqual(Array(12).fill(false));
    for (const host of sim.hosts) {
      const [app] = await host.ops.inventory();
      expect(app).toMatchObject({ current: next, releases: [release, next] });
    }
    expect(sim.hosts.every((h) => h.welcomes === 1)).toBe(true);
  });

  it("spreads hosts over several servers in turn", () => {
    const spread = new AgentSimulator({ servers: ["http://a:1", "http://b:2"], token: "x", count: 3 });
    expect(spread.hosts.map((h) => [h.name, h.server])).toEqual([
      ["sim-1", "http://a:1"],
      ["sim-2", "http://b:2"],
      ["sim-3", "http://a:1"],
    ]);
    expect(() => new AgentSimulator({ servers: [], token: "x", count: 1 })).toThrow(/at least one server/);
  });
});

describe("SimHostOps: a host in memory that answers like a real one", () => {
  const manifestOf = (files: Record<string, string>) => ({
    version: 1 as const,
    entries: Object.entries(files).map(([path, text]) => ({
      type: "file" as const,
      path,
      mode: 0o644,
      size: Buffer.byteLength(text),
      sha256: sha(text),
    })),
  });
  const spec = (releaseId: string, files: Record<string, string>) => ({
    app: "shop",
    releaseId,
    manifest: manifestOf(files),
    shared: [],
    env: {},
    timeoutMs: 1000,
  });
  /** Serves the given texts by digest; counts what it was asked for. */
  const source = (texts: string[]) => {
    const asked: string[] = [];
    const byDigest = new Map(texts.map((text) => [sha(text), text]));
    const blobs: BlobSource = {
      open: async (digest) => Readable.from([Buffer.from(byDigest.get(digest) ?? "")]),
      openConcatenated: async (digests) => {
        asked.push(...digests);
        const out = new PassThrough();
        // Bytes cut at odd places: blobs are split by size, not by chunk.
        const all = Buffer.from(digests.map((d) => byDigest.get(d) ?? "").join(""));
        for (let i = 0; i < all.length; i += 3) out.write(all.subarray(i, i + 3));
        out.end();
        return out;
      },
    };
    return { blobs, asked };
  };

  it("stages, switches, prunes and reports like the host layout, fetching only missing blobs", async () => {
    const host = new SimHostOps("h1");
    const a = source(["one", "two"]);
    const r1 = "a".repeat(16);
    const r2 = "b".repeat(16);
    expect(await host.stage(spec(r1, { "x/1": "one", "x/2": "two" }), a.blobs, noLog, never)).toEqual({
      staged: true,
      blobsFetched: 2,
      bytesFetched: 6,
    });
    expect(await host.stage(spec(r1, { "x/1": "one", "x/2": "two" }), a.blobs, noLog, never)).toMatchObject({
      staged: false,
    });
    const b = source(["one", "three"]);
    expect(await host.stage(spec(r2, { "x/1": "one", "x/3": "three" }), b.blobs, noLog, never)).toMatchObject(
      {
        blobsFetched: 1,
        bytesFetched: 5,
      },
    );
    expect(b.asked).toEqual([sha("three")]);
    expect(await host.switchTo("shop", r1, "current")).toEqual({ previous: null });
    expect(await host.switchTo("shop", r2, "next")).toEqual({ previous: null });
    expect(await host.promoteSlot("shop", "next")).toEqual({ previous: r1, current: r2 });
    expect(await host.inventory()).toEqual([
      { app: "shop", releases: [r1, r2], current: r2, slots: { next: r2 } },
    ]);
    expect(await host.prune("shop", 0)).toEqual({ removed: [r1] });
    expect(host.blobCount).toBe(3);
  });

  it("refuses what a real host refuses, with the same codes", async () => {
    const host = new SimHostOps("h1");
    await expect(host.switchTo("shop", "c".repeat(16), "current")).rejects.toMatchObject({
      code: "E_NOT_FOUND",
    });
    await expect(host.switchTo("../etc", "c".repeat(16), "current")).rejects.toMatchObject({
      code: "E_INVALID_NAME",
    });
    await expect(host.stage(spec("not-an-id", {}), source([]).blobs, noLog, never)).rejects.toMatchObject({
      code: "E_VALIDATION",
    });
    const escaping = { ...spec("d".repeat(16), {}), manifest: manifestOf({ "../../etc/passwd": "x" }) };
    await expect(host.stage(escaping, source(["x"]).blobs, noLog, never)).rejects.toMatchObject({
      code: "E_VALIDATION",
    });
    // A server sending the wrong bytes fails the staging and records nothing.
    const liar: BlobSource = {
      open: async () => Readable.from([Buffer.from("evil")]),
      openConcatenated: async () => Readable.from([Buffer.from("evil")]),
    };
    await expect(host.stage(spec("e".repeat(16), { f: "good" }), liar, noLog, never)).rejects.toMatchObject({
      code: "E_VALIDATION",
    });
    expect(await host.inventory()).toEqual([]);
    await expect(host.run("shop", [], {}, 1000, noLog, never)).rejects.toMatchObject({
      code: "E_VALIDATION",
    });
  });
});
