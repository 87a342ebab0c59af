import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { ensureBuilt, turnout } from "../helpers/built-cli.js";
import {
  type AgentProcess,
  assertConsistent,
  currentOf,
  freePort,
  startAgent,
  waitForHosts,
} from "../helpers/fleet.js";
import { makeRepo } from "../helpers/git-fixtures.js";
import { type ServerProcess, startServerProcess } from "../helpers/server-process.js";
import { until } from "../helpers/wait.js";

beforeAll(ensureBuilt, 120_000);

/**
 * The server is SIGKILLed in the middle of a fleet deploy's batches. After a
 * restart the deploy is `interrupted`, the record shows exactly which hosts
 * switched, and `turnout rollback` puts exactly those back — from the
 * record, never from directory timestamps.
 */
describe("server killed during the batch phase", () => {
  let root: string;
  let server: ServerProcess | undefined;
  let agents: AgentProcess[] = [];

  afterEach(async () => {
    for (const a of agents) await a.kill().catch(() => undefined);
    await assertConsistent(agents.map((a) => a.root));
    agents = [];
    server?.child.kill("SIGKILL");
    await server?.exited;
    await rm(root, { recursive: true, force: true });
  });

  it("marks the deploy interrupted and rolls back exactly the switched hosts", async () => {
    root = await mkdtemp(path.join(tmpdir(), "turnout-fleet-crash-"));
    const dataDir = path.join(root, "data");
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
      restart: [sh, -c, 'if grep -q 2 VERSION; then sleep 4; fi']
      strategy: { canary: 1, batch: 1 }
`,
    );
    const env = {
      PATH: process.env["PATH"],
      HOME: root,
      XDG_CONFIG_HOME: path.join(root, "xdg"),
      TURNOUT_HOME: dataDir,
    };
    const port = await freePort();
    server = await startServerProcess({ dataDir, configDir, cwd: root, env, port });
    const admin = readFileSync(path.join(dataDir, "admin-token"), "utf8").trim();
    const api = async (method: string, urlPath: string, body?: unknown) => {
      const res = await fetch(server!.url + urlPath, {
        method,
        headers: {
          authorization: `Bearer ${admin}`,
          ...(body ? { "content-type": "application/json" } : {}),
        },
        ...(body ? { body: JSON.stringify(body) } : {}),
      });
      return { status: res.status, body: (await res.json()) as any };
    };
    const enroll = (
      await api("POST", "/api/v1/tokens", {
        name: "enroll",
        role: "agent",
        apps: ["shop"],
        labels: ["role=web"],
      })
    ).body.token;
    agents = ["web-1", "web-2", "web-3"].map((name) =>
      startAgent({
        serverUrl: server!.url,
        token: enroll,
        name,
        root: path.join(root, name),
        labels: { role: "web" },
      }),
    );
    await waitForHosts(api, ["web-1", "web-2", "web-3"]);
    const waitDone = async (id: number) => {
      await until(
        async () =>
          ["succeeded", "failed", "cancelled"].includes(
            (await api("GET", `/api/v1/deploys/${id}`)).body.deploy.status,
          ),
        60_000,
        `deploy ${id} finished`,
      );
      return (await api("GET", `/api/v1/deploys/${id}`)).body.deploy;
    };

    const first = await waitDone(
      (await api("POST", "/api/v1/apps/shop/environments/production/deploys", {})).body.deploy.id,
    );
    expect(first.status).toBe("succeeded");
    const r1 = await currentOf(agents[0]!.root, "shop");
    expect(r1).toMatch(/^[0-9a-f]{16}$/);

    await repo.commit({ VERSION: "2\n" }, "two");
    const second = (await api("POST", "/api/v1/apps/shop/environments/production/deploys", {})).body.deploy;
    // web-2 is the first host of the batches; kill the server while its restart runs.
    await until(
      async () =>
        ((await api("GET", `/api/v1/deploys/${second.id}/hosts`)).body.hosts as any[]).some(
          (h) => h.hostName === "web-2" && h.switched,
        ),
      60_000,
      "web-2 switched",
    );
    server.child.kill("SIGKILL");
    await server.exited;
    const r2 = await currentOf(agents[1]!.root, "shop");
    expect(r2).not.toBe(r1);
    expect(await currentOf(agents[2]!.root, "shop")).toBe(r1);

    server = await startServerProcess({ dataDir, configDir, cwd: root, env, port });
    await waitForHosts(api, ["web-1", "web-2", "web-3"], 40_000).catch((error) => {
      throw new Error(
        `${error.message}\n${agents.map((a) => `${a.name}: ${a.output()}`).join("\n")}\nserver: ${server!.output()}`,
      );
    });
    const interrupted = (await api("GET", `/api/v1/deploys/${second.id}`)).body.deploy;
    expect(interrupted).toMatchObject({ status: "failed", errorCode: "interrupted" });
    const record = (await api("GET", `/api/v1/deploys/${second.id}/hosts`)).body.hosts as any[];
    expect(record.filter((h) => h.switched).map((h) => h.hostName)).toEqual(["web-1", "web-2"]);

    const rollback = await turnout(["rollback", "shop", "production", "--follow", "--server", server.url], {
      env,
      cwd: root,
    });
    expect(rollback.code, rollback.stderr).toBe(0);
    expect(rollback.stdout).toContain("[web-3] already on");
    for (const a of agents) expect(await currentOf(a.root, "shop")).toBe(r1);
  });
});
