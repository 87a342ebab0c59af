import { existsSync } from "node:fs";
import { mkdtemp, readFile, readlink, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { WebSocket } from "ws";
import { AGENT_CONNECT_PATH } from "../../src/agent/protocol.js";
import { type AgentProcess, assertConsistent, startAgent, waitForHosts } from "../helpers/fleet.js";
import { type SshdInstance, startSshd } from "../helpers/sshd.js";
import { startTurnout, type TestTurnout } from "../helpers/turnout.js";
import { until } from "../helpers/wait.js";

/**
 * Per-environment deploy paths through the whole engine (issue 15): a real
 * server, real `turnout agent` processes and a real sshd. Two environments of
 * one app on one host, each at its own path; rollback and slot switches use
 * the path; drift is read per path; an agent too old for paths is refused for
 * that deploy instead of deploying to <root>/<app>.
 */
const placeOf = async (dir: string) => path.basename(await readlink(path.join(dir, "current")));

describe("fleet deploys to an environment's own deploy path", () => {
  let t: TestTurnout | undefined;
  let work: string;
  let agents: AgentProcess[] = [];
  let sshd: SshdInstance | undefined;

  afterEach(async () => {
    for (const a of agents) await a.kill().catch(() => undefined);
    await assertConsistent(agents.map((a) => a.root));
    agents = [];
    await t?.stop();
    t = undefined;
    await sshd?.stop();
    sshd = undefined;
    await rm(work, { recursive: true, force: true });
  });

  const agentManifest = (staging: string, production: string) => `repo: "{repo}"
environments:
  staging:
    deploy:
      provider: fleet
      hosts: { labels: { role: web } }
      path: ${staging}
      restart: [sh, -c, 'echo "$TURNOUT_RELEASE_DIR" >> "$TURNOUT_SHARED_DIR/restarts"']
      health: { command: [sh, -c, '! grep -q bad VERSION'], retries: 0 }
  production:
    deploy:
      provider: fleet
      hosts: { labels: { role: web } }
      path: ${production}
`;

  async function withAgent(manifest: (work: string) => string) {
    work = await mkdtemp(path.join(tmpdir(), "turnout-envpath-"));
    t = await startTurnout({ manifest: manifest(work) });
    const token = (
      await t.api("POST", "/api/v1/tokens", {
        name: "enroll",
        role: "agent",
        apps: ["shop"],
        labels: ["role=web"],
      })
    ).body.token;
    agents = [
      startAgent({
        serverUrl: t.url,
        token,
        name: "web-1",
        root: path.join(work, "root"),
        labels: { role: "web" },
      }),
    ];
    await waitForHosts(t.api, ["web-1"]);
  }
  const deploy = async (env: string, body: Record<string, unknown> = {}, action = "deploys") =>
    t!.waitForDeploy(
      (await t!.api("POST", `/api/v1/apps/shop/environments/${env}/${action}`, body)).body.deploy.id,
      60_000,
    );
  const logOf = async (id: number) => (await t!.store.logs.read(id, 0)).chunks.map((c) => c.text).join("");
  const hostsOf = async (env: string) =>
    (await t!.api("GET", `/api/v1/apps/shop/environments/${env}/hosts`)).body.hosts.map((h: any) => [
      h.name,
      h.current,
      h.drifted,
    ]);
  const releaseOf = async (env: string) =>
    (await t!.store.releases.current("shop", env))!.artifact!.slice(0, 16);

  it("agents: two environments of one app on one host, each at its path; rollback and drift per path", async () => {
    await withAgent((w) =>
      agentManifest(path.join(w, "www", "shop-staging"), path.join(w, "root", "shop-production")),
    );
    const staging = path.join(work, "www", "shop-staging");
    const production = path.join(work, "root", "shop-production");

    const s1 = await deploy("staging");
    expect(s1.status, await logOf(s1.id)).toBe("succeeded");
    const p1 = await deploy("production");
    expect(p1.status, await logOf(p1.id)).toBe("succeeded");
    const r1 = await releaseOf("staging");
    expect(await placeOf(staging)).toBe(r1);
    expect(await placeOf(production)).toBe(r1);
    // Nothing at <root>/<app>; the agent's cache and its record of the paths under <root>/.turnout.
    expect(existsSync(path.join(work, "root", "shop"))).toBe(false);
    expect((await readFile(path.join(work, "root", ".turnout", "paths"), "utf8")).split("\n").sort()).toEqual(
      ["", `shop ${production}`, `shop ${staging}`].sort(),
    );
    expect(await readFile(path.join(staging, "shared", "restarts"), "utf8")).toBe(
      `${path.join(staging, "releases", r1)}\n`,
    );

    await t!.repo.commit({ VERSION: "2\n" }, "two");
    const s2 = await deploy("staging");
    expect(s2.status, await logOf(s2.id)).toBe("succeeded");
    const r2 = await releaseOf("staging");
    expect(r2).not.toBe(r1);
    expect(await placeOf(staging)).toBe(r2);
    expect(await placeOf(production)).toBe(r1);
    // The agent reports each layout with its path: each environment sees its own current.
    await until(
      async () => JSON.stringify(await hostsOf("staging")) === JSON.stringify([["web-1", r2, false]]),
      10_000,
      "staging's view",
    );
    expect(await hostsOf("production")).toEqual([["web-1", r1, false]]);
    const listed = (await t!.api("GET", "/api/v1/hosts/web-1")).body.host.apps;
    expect(listed.map((a: any) => [a.app, a.path, a.current])).toEqual(
      [
        ["shop", production, r1],
        ["shop", staging, r2],
      ].sort((a, b) => (a[1]! < b[1]! ? -1 : 1)),
    );

    // A rollback of staging switches back at staging's path; production stays.
    const back = await deploy("staging", {}, "rollback");
    expect(back.status, await logOf(back.id)).toBe("succeeded");
    expect(await placeOf(staging)).toBe(r1);
    expect(await placeOf(production)).toBe(r1);
    await until(
      async () => JSON.stringify(await hostsOf("staging")) === JSON.stringify([["web-1", r1, false]]),
      10_000,
      "staging rolled back",
    );
  });

  it("slots at a path: deploy next beside current, then switch current to it", async () => {
    await withAgent((w) =>
      agentManifest(path.join(w, "www", "shop-staging"), path.join(w, "www", "shop-production")),
    );
    const staging = path.join(work, "www", "shop-staging");
    expect((await deploy("staging")).status).toBe("succeeded");
    const live = await placeOf(staging);
    await t!.repo.commit({ VERSION: "next\n" }, "next");
    const next = await deploy("staging", { slot: "next" });
    expect(next.status, await logOf(next.id)).toBe("succeeded");
    expect(await placeOf(staging)).toBe(live);
    const nextId = path.basename(await readlink(path.join(staging, "slots", "next")));
    expect(nextId).not.toBe(live);
    const switched = await deploy("staging", { slot: "next" }, "switch");
    expect(switched, await logOf(switched.id)).toMatchObject({ status: "succeeded", trigger: "promote" });
    expect(await placeOf(staging)).toBe(nextId);
    expect(existsSync(path.join(work, "root", "shop"))).toBe(false);
  });

  it("refuses the deploy on an agent of protocol 2, which would ignore the path: nothing is sent to it", async () => {
    work = await mkdtemp(path.join(tmpdir(), "turnout-envpath-"));
    t = await startTurnout({
      manifest: agentManifest(path.join(work, "www", "s"), path.join(work, "www", "p")),
    });
    const token = (
      await t.api("POST", "/api/v1/tokens", {
        name: "enroll",
        role: "agent",
        apps: ["shop"],
        labels: ["role=web"],
      })
    ).body.token;
    // An agent of the previous release, speaking protocol 2 over a real WebSocket.
    const socket = new WebSocket(`${t.url.replace("http", "ws")}${AGENT_CONNECT_PATH}`, {
      headers: { authorization: `Bearer ${token}` },
    });
    const received: any[] = [];
    socket.on("message", (data) => received.push(JSON.parse(String(data))));
    await new Promise((resolve, reject) => {
      socket.once("open", resolve);
      socket.once("error", reject);
    });
    socket.send(
      JSON.stringify({
        type: "hello",
        protocol: 2,
        minProtocol: 1,
        name: "old-1",
        labels: { role: "web" },
        version: "0.9.0",
        inventory: [],
        manifests: [],
      }),
    );
    await until(() => received.some((m) => m.type === "welcome"), 10_000, "welcome");
    expect(received.find((m) => m.type === "welcome").protocol).toBe(2);

    const refused = await deploy("staging");
    const log = await logOf(refused.id);
    expect(refused, log).toMatchObject({ status: "failed", errorCode: "E_STAGE_FAILED" });
    expect(log).toContain(
      "[old-1] staging failed: host old-1: its agent (turnout 0.9.0, protocol 2) cannot place releases at a deploy path",
    );
    expect(log).toContain("upgrade the agent");
    expect(received.filter((m) => m.type === "call")).toEqual([]);
    socket.close();
  });

  it("SSH: deploys at the path through the engine, a second environment beside it, drift read per path", async () => {
    work = await mkdtemp(path.join(tmpdir(), "turnout-envpath-"));
    sshd = await startSshd();
    const host = `        - name: box-1
          address: 127.0.0.1
          port: ${sshd.port}
          user: ${sshd.user}
          key_file: ${sshd.keyFile}
          known_hosts_file: ${sshd.knownHostsFile}
          root: ${sshd.root}`;
    const staging = path.join(work, "www", "shop-staging");
    t = await startTurnout({
      manifest: `repo: "{repo}"
environments:
  staging:
    deploy:
      provider: fleet
      path: ${staging}
      ssh:
${host}
      health: { command: [sh, -c, '! grep -q bad VERSION'], retries: 0 }
  production:
    deploy:
      provider: fleet
      ssh:
${host}
`,
    });
    const s1 = await deploy("staging");
    expect(s1.status, await logOf(s1.id)).toBe("succeeded");
    const r1 = await releaseOf("staging");
    expect(await placeOf(staging)).toBe(r1);
    expect(existsSync(path.join(sshd.root, "shop"))).toBe(false);
    const p1 = await deploy("production");
    expect(p1.status, await logOf(p1.id)).toBe("succeeded");
    expect(await placeOf(path.join(sshd.root, "shop"))).toBe(r1);

    await t.repo.commit({ VERSION: "bad\n" }, "broken");
    const broken = await deploy("staging");
    expect(broken, await logOf(broken.id)).toMatchObject({ status: "failed", errorCode: "E_ROLLED_BACK" });
    // Switched back at the path after the failed health check.
    expect(await placeOf(staging)).toBe(r1);
    expect(await hostsOf("staging")).toEqual([["box-1", r1, false]]);
    expect(await hostsOf("production")).toEqual([["box-1", r1, false]]);
  });

  it("refuses a manifest whose path is not absolute, not normalized, '/' or inside an SSH host's <root>/.turnout", async () => {
    work = await mkdtemp(path.join(tmpdir(), "turnout-envpath-"));
    t = await startTurnout();
    for (const [bad, why] of [
      ["www/shop", "an absolute path"],
      ["/srv/../etc", "a normalized path"],
      ["/srv//www", "a normalized path"],
      ["/srv/www/", "a normalized path"],
      ["/", "not '/' itself"],
      ["/srv/turnout/.turnout/x", "not inside /srv/turnout/.turnout"],
      ["/srv/turnout", "not the release root /srv/turnout itself"],
    ]) {
      await t.writeManifest(
        "bad",
        `repo: "{repo}"
environments:
  production:
    deploy:
      provider: fleet
      path: "${bad}"
      ssh:
        - { name: box-1, address: 127.0.0.1, user: deploy, key_file: /k, known_hosts_file: /kh }
`,
      );
      const res = await t.api("GET", "/api/v1/apps/bad");
      expect(res.body.error?.code, bad).toBe("E_INVALID_MANIFEST");
      expect(JSON.stringify(res.body.error), bad).toContain(why!);
    }
  });
});
