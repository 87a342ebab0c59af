import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { type RunningServer, startServer } from "../../src/server/start-server.js";
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
 * Fleet deploys when the server shuts down. One waiting for approval is
 * interrupted at once (only a person ends that wait); one still switching
 * when the grace runs out is interrupted then. Either way nothing more is
 * done to any host — as after a crash, switched hosts stay switched and the
 * record says which — and after a restart `rollback` repairs exactly those,
 * as docs/fleets.md#crash-safety says.
 */
describe("fleet deploys during a shutdown", () => {
  let t: TestTurnout | undefined;
  let next: RunningServer | undefined;
  let work: string;
  let agents: AgentProcess[] = [];

  afterEach(async () => {
    for (const a of agents) await a.kill().catch(() => undefined);
    await assertConsistent(agents.map((a) => a.root));
    agents = [];
    await next?.close();
    next = undefined;
    await t?.stop();
    t = undefined;
    await rm(work, { recursive: true, force: true });
  });

  /** The server with `shop/production` on web-1..3 (canary web-1), the agents, and deploy #1 live. */
  async function start(strategy: string, extra = "") {
    t = await startTurnout({
      manifest: `repo: "{repo}"
environments:
  production:
    deploy:
      provider: fleet
      hosts: { labels: { role: web } }
      strategy: ${strategy}
${extra}`,
    });
    const turnout = t;
    work = await mkdtemp(path.join(tmpdir(), "turnout-fleet-shutdown-"));
    const token = (
      await turnout.api("POST", "/api/v1/tokens", { name: "enroll", role: "agent", labels: ["role=web"] })
    ).body.token;
    agents = ["web-1", "web-2", "web-3"].map((name) =>
      startAgent({
        serverUrl: turnout.url,
        token,
        name,
        root: path.join(work, name),
        labels: { role: "web" },
      }),
    );
    await waitForHosts(
      turnout.api,
      agents.map((a) => a.name),
    );
    return turnout;
  }

  const deploy = async (turnout: TestTurnout) =>
    (await turnout.api("POST", "/api/v1/apps/shop/environments/production/deploys", {})).body.deploy;

  /** After the shutdown: a server on the same data directory and port, which the agents reconnect to. */
  async function restart(turnout: TestTurnout): Promise<RunningServer> {
    next = await startServer(
      { ...turnout.settings, port: turnout.server.port },
      { print: () => undefined, polling: false },
    );
    return next;
  }

  const logOf = async (server: RunningServer, id: number) =>
    (await server.store.logs.read(id, 0)).chunks.map((c) => c.text).join("");

  /** The documented repair after an interrupted fleet deploy: rollback puts the switched hosts back. */
  async function repair(turnout: TestTurnout, server: RunningServer, live: string | null) {
    await waitForHosts(
      turnout.api,
      agents.map((a) => a.name),
    );
    const asked = await turnout.api("POST", "/api/v1/apps/shop/environments/production/rollback", {});
    expect(asked.status).toBe(202);
    await until(
      async () =>
        ["succeeded", "failed", "cancelled"].includes(
          (await server.store.deploys.get(asked.body.deploy.id)).status,
        ),
      60_000,
      "repair finished",
    );
    const done = await server.store.deploys.get(asked.body.deploy.id);
    expect(done.status, await logOf(server, done.id)).toBe("succeeded");
    for (const a of agents) expect(await currentOf(a.root, "shop")).toBe(live);
  }

  it("waiting for approval: interrupted at once, the canary left switched, repaired after a restart", async () => {
    const turnout = await start("{ canary: 1, batch: 2, approval: true, approval_timeout: 1h }");
    const waitForApproval = (id: number) =>
      until(
        async () => (await turnout.store.deploys.get(id)).phase === "approval",
        60_000,
        "waiting for approval",
      );
    const first = await deploy(turnout);
    await waitForApproval(first.id);
    expect((await turnout.api("POST", `/api/v1/deploys/${first.id}/approve`, {})).status).toBe(200);
    expect((await turnout.waitForDeploy(first.id, 60_000)).status).toBe("succeeded");
    const live = await currentOf(agents[0]!.root, "shop");
    expect(live).not.toBeNull();

    await turnout.repo.commit({ VERSION: "2.0.0\n" }, "two");
    const second = await deploy(turnout);
    await waitForApproval(second.id);
    const canaryRelease = await currentOf(agents[0]!.root, "shop");
    expect(canaryRelease).not.toBe(live);

    // An hour of grace: had the shutdown waited for the approval, this test would time out.
    await turnout.server.close({ graceMs: 3_600_000 });
    // Nothing was switched back: the canary serves the new release, the others the old one.
    expect(await currentOf(agents[0]!.root, "shop")).toBe(canaryRelease);
    expect(await currentOf(agents[1]!.root, "shop")).toBe(live);
    expect(await currentOf(agents[2]!.root, "shop")).toBe(live);

    const restarted = await restart(turnout);
    expect(await restarted.store.deploys.get(second.id)).toMatchObject({
      status: "failed",
      errorCode: "interrupted",
      errorMessage: "the server shut down while this deploy waited for approval",
    });
    const hosts = await restarted.store.fleet.deployHosts(second.id);
    expect(hosts.map((h) => [h.hostName, h.switched])).toEqual([
      ["web-1", true],
      ["web-2", false],
      ["web-3", false],
    ]);
    const log = await logOf(restarted, second.id);
    expect(log).toContain(
      "==> interrupted: 1 host(s) left switched (web-1); `turnout rollback shop production`",
    );
    expect(log).toContain("==> interrupted: the server shut down while this deploy waited for approval");
    expect(log).not.toContain("switching the canary back");

    await repair(turnout, restarted, live);
  }, 180_000);

  it("still switching when the grace runs out: interrupted, the canary left switched, repaired after a restart", async () => {
    // Version 2's restart on the canary outlasts the grace.
    const turnout = await start(
      "{ canary: 1, batch: 1 }",
      "      restart: [sh, -c, 'if grep -q 2 VERSION; then sleep 60; fi']\n",
    );
    const first = await deploy(turnout);
    expect((await turnout.waitForDeploy(first.id, 60_000)).status).toBe("succeeded");
    const live = await currentOf(agents[0]!.root, "shop");

    await turnout.repo.commit({ VERSION: "2.0.0\n" }, "two");
    const second = await deploy(turnout);
    await until(
      async () =>
        (await turnout.store.fleet.deployHosts(second.id)).some((h) => h.hostName === "web-1" && h.switched),
      60_000,
      "canary switched, restarting",
    );
    const canaryRelease = await currentOf(agents[0]!.root, "shop");
    expect(canaryRelease).not.toBe(live);

    await turnout.server.close({ graceMs: 500 });
    // The canary's restart was stopped, and the canary was not switched back.
    expect(await currentOf(agents[0]!.root, "shop")).toBe(canaryRelease);
    expect(await currentOf(agents[1]!.root, "shop")).toBe(live);
    expect(await currentOf(agents[2]!.root, "shop")).toBe(live);

    const restarted = await restart(turnout);
    expect(await restarted.store.deploys.get(second.id)).toMatchObject({
      status: "failed",
      errorCode: "interrupted",
      errorMessage: "the server shut down before this deploy finished (grace 500ms)",
    });
    const hosts = await restarted.store.fleet.deployHosts(second.id);
    expect(hosts.map((h) => [h.hostName, h.switched])).toEqual([
      ["web-1", true],
      ["web-2", false],
      ["web-3", false],
    ]);
    const log = await logOf(restarted, second.id);
    expect(log).toContain("==> interrupted: 1 host(s) left switched (web-1)");
    expect(log).not.toContain("switched back");

    await repair(turnout, restarted, live);
  }, 180_000);
});
