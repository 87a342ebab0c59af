import { lstatSync, readFileSync, readlinkSync, statSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { PROTOCOL_VERSION } from "../../src/agent/protocol.js";
import { type RunningServer, startServer } from "../../src/server/start-server.js";
import { makeTree, realTar } from "../artifacts/helpers.js";
import { ensureBuilt, turnout } from "../helpers/built-cli.js";
import { startTurnout, type TestTurnout } from "../helpers/turnout.js";
import { until } from "../helpers/wait.js";
import { type AgentProcess, listeningSockets, socketCount, spawnAgent } from "./agent-helpers.js";

/**
 * Real `turnout agent` processes (the built CLI) against the real server in
 * this process: enrollment, host tokens, reconnects, heartbeats, and calls
 * through the hub onto the agent's host layout.
 */
let t: TestTurnout;
let root: string;
let enrollToken: string;
const agents: AgentProcess[] = [];
const extraServers: RunningServer[] = [];

beforeAll(async () => {
  await ensureBuilt();
});

beforeEach(async () => {
  t = await startTurnout();
  root = await mkdtemp(path.join(tmpdir(), "turnout-agent-root-"));
  const created = await t.api("POST", "/api/v1/tokens", {
    name: "enroll",
    role: "agent",
    labels: ["role=web", "env=prod"],
  });
  expect(created.status).toBe(201);
  enrollToken = created.body.token;
});

afterEach(async () => {
  await Promise.all(agents.splice(0).map((a) => a.kill("SIGKILL")));
  for (const server of extraServers.splice(0)) await server.close();
  await t.stop();
  await rm(root, { recursive: true, force: true });
});

function agent(extra: string[] = [], token = enrollToken, server = t.url): AgentProcess {
  const started = spawnAgent([
    "--server",
    server,
    "--token",
    token,
    "--name",
    "web-1",
    "--label",
    "role=web",
    "--label",
    "env=prod",
    "--root",
    root,
    ...extra,
  ]);
  agents.push(started);
  return started;
}

async function host(name = "web-1", server: { url: string } = t): Promise<any> {
  const response = await fetch(`${server.url}/api/v1/hosts`, {
    headers: { authorization: `Bearer ${t.adminToken}` },
  });
  const body = (await response.json()) as { hosts: any[] };
  return body.hosts.find((h) => h.name === name);
}

async function connected(name = "web-1", server: { url: string } = t): Promise<boolean> {
  return (await host(name, server))?.connected === true;
}

/** Connected as both ends see it: the agent has printed its `times`-th welcome, the server lists it. */
async function online(a: AgentProcess, times = 1, server: { url: string } = t): Promise<void> {
  await until(
    async () => a.count(/connected to http/) >= times && (await connected("web-1", server)),
    15_000,
    `connection ${times}`,
  );
}

describe("turnout agent", () => {
  it("connects out, says hello with its labels, shows up connected, and never listens", async () => {
    const before = Date.now();
    const a = agent();
    await online(a);

    const shown = await host();
    expect(shown).toMatchObject({
      name: "web-1",
      kind: "agent",
      labels: { role: "web", env: "prod" },
      poolState: "pooled",
      connected: true,
      apps: [],
    });
    expect(Date.parse(shown.lastSeenAt)).toBeGreaterThanOrEqual(before - 1000);
    expect(a.output()).toMatch(
      new RegExp(
        `agent web-1: connected to http://127\\.0\\.0\\.1:\\d+ \\(host id \\d+, protocol ${PROTOCOL_VERSION}\\)`,
      ),
    );

    // The host token: issued once, saved 0600 in a 0700 directory.
    const tokenFile = path.join(root, ".turnout", "host-token");
    expect(statSync(tokenFile).mode & 0o777).toBe(0o600);
    expect(statSync(path.dirname(tokenFile)).mode & 0o777).toBe(0o700);
    expect(readFileSync(tokenFile, "utf8").trim()).toMatch(/^tnh_[A-Za-z0-9_-]{43}$/);
    const row = await t.store.hosts.get("web-1");
    expect(row?.connectedTo).toBe(t.engine.owner);

    // Sockets, yes (its connection to the server); listening ones, none.
    expect(socketCount(a.pid)).toBeGreaterThan(0);
    expect(listeningSockets(a.pid)).toBe(0);
    // The check itself sees a listener when there is one: the server in this process.
    expect(listeningSockets(process.pid)).toBeGreaterThan(0);

    // `turnout hosts` as users run it.
    const listed = await turnout(["hosts", "--server", t.url, "--token", t.adminToken]);
    expect(listed.code).toBe(0);
    const lines = listed.stdout.trim().split("\n");
    expect(lines[0]).toMatch(
      /^NAME\s+KIND\s+STATE\s+LAST SEEN\s+POOL\s+LABELS\s+IGNORED LABELS\s+GRANT\s+CURRENT$/,
    );
    expect(lines[1]).toMatch(
      /^web-1\s+agent\s+connected\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ\s+pooled\s+env=prod,role=web\s+-\s+apps=\* labels=env=prod,role=web\s+-$/,
    );
    const json = await turnout(["hosts", "--json", "--server", t.url, "--token", t.adminToken]);
    expect(JSON.parse(json.stdout).hosts[0]).toMatchObject({ name: "web-1", connected: true });

    // SIGTERM: a clean goodbye, exit 0, and the server notices at once.
    expect(await a.kill("SIGTERM")).toBe(0);
    expect(a.output()).toMatch(/agent web-1: stopped/);
    await until(async () => !(await connected()), 5_000, "web-1 disconnected after SIGTERM");
  });

  it("reconnects with its host token after the enrollment token is revoked", async () => {
    const first = agent();
    await online(first);
    expect(first.output()).toMatch(/enrolled; host token saved/);
    await first.kill("SIGKILL");
    await until(async () => !(await connected()), 5_000, "disconnected after kill");

    expect((await t.api("DELETE", "/api/v1/tokens/enroll")).status).toBe(200);
    const second = agent();
    await online(second);
    expect(second.output()).not.toMatch(/enrolled/);
    expect(second.output()).not.toMatch(/refused/);

    // Without a saved host token, the revoked enrollment token gets nowhere.
    await second.kill("SIGKILL");
    await rm(path.join(root, ".turnout"), { recursive: true, force: true });
    const third = agent(["--name", "web-2"]);
    await until(
      () => third.count(/refused the connection \(HTTP 401/) >= 1,
      10_000,
      "401 for a revoked token",
    );
    expect(await connected("web-2")).toBe(false);
  });

  it("keeps retrying a refused token with backoff: no crash, no tight loop", async () => {
    const a = agent([], "tnt_not-a-real-token");
    await new Promise((r) => setTimeout(r, 3_200));
    const attempts = a.count(/refused the connection \(HTTP 401: E_UNAUTHORIZED/);
    // 0.5 s, then up to 1 s, then up to 2 s: about 3–4 tries in 3 s, never dozens.
    expect(attempts).toBeGreaterThanOrEqual(2);
    expect(attempts).toBeLessThanOrEqual(6);
    expect(a.child.exitCode).toBeNull();
    expect(a.output()).toMatch(/reconnecting in \d+\.\d s/);
    expect(await host()).toBeUndefined();
  });

  it("reconnects by itself when the server restarts on the same port and data directory", async () => {
    const a = agent();
    await online(a);
    const port = t.server.port;
    await t.server.close();
    await until(() => a.count(/disconnected/) >= 1, 5_000, "agent noticed the server going away");

    const next = await startServer({ ...t.settings, port }, { print: () => undefined, polling: false });
    extraServers.push(next);
    await online(a, 2, next);
    // The second server knows it by its host token: no second enrollment.
    expect(a.count(/enrolled/)).toBe(1);
    const row = await next.store.hosts.get("web-1");
    expect(row?.connectedTo).toBe(next.engine.owner);
  });

  it("shows a silent agent disconnected within the heartbeat timeout, and it comes back", async () => {
    t.server.agents.timing.heartbeatTimeoutMs = 2_500;
    t.server.agents.timing.pingIntervalMs = 500;
    const a = agent(["--heartbeat", "500"]);
    await online(a);
    // Heartbeats keep it connected well past the timeout.
    await new Promise((r) => setTimeout(r, 3_000));
    expect(await connected()).toBe(true);

    // Stopped, not killed: the socket stays open but nothing arrives.
    process.kill(a.pid, "SIGSTOP");
    const stoppedAt = Date.now();
    try {
      await until(async () => !(await connected()), 6_000, "silent agent disconnected");
      expect(Date.now() - stoppedAt).toBeGreaterThanOrEqual(2_000);
    } finally {
      process.kill(a.pid, "SIGCONT");
    }
    await online(a, 2);

    // Killed: the server sees the socket close right away.
    await a.kill("SIGKILL");
    await until(async () => !(await connected()), 2_000, "killed agent disconnected");
  });

  it("runs calls from the hub: inventory, run with logs, cancel, and fails calls when the agent dies", async () => {
    const a = agent();
    await online(a);
    const ops = t.server.agents.opsFor("web-1");
    expect(ops).toBeDefined();
    expect(t.server.agents.opsFor("nobody")).toBeUndefined();
    expect(await ops!.inventory()).toEqual([]);
    expect(await ops!.prune("shop", 5)).toEqual({ removed: [] });

    const invalid = await ops!.switchTo("shop", "../../etc", "current").catch((e: unknown) => e);
    expect(invalid).toMatchObject({ code: "E_VALIDATION" });

    // Cancel through the AbortSignal: the agent stops the command, the call ends quickly.
    const controller = new AbortController();
    const started = Date.now();
    const lines: string[] = [];
    const running = ops!
      .run(
        "shop",
        ["sh", "-c", "echo started; sleep 30"],
        {},
        60_000,
        (line) => lines.push(line),
        controller.signal,
      )
      .catch((e: unknown) => e);
    await until(() => lines.some((l) => l.includes("started")), 10_000, "log line streamed");
    controller.abort();
    await running;
    expect(Date.now() - started).toBeLessThan(10_000);

    // The agent dies mid-call: the call fails with E_UNAVAILABLE, not a hang.
    const hanging = ops!
      .run("shop", ["sleep", "30"], {}, 60_000, () => undefined, new AbortController().signal)
      .catch((e: unknown) => e);
    await new Promise((r) => setTimeout(r, 300));
    await a.kill("SIGKILL");
    const error = await hanging;
    expect(error).toMatchObject({ code: "E_UNAVAILABLE" });
    expect(String((error as Error).message)).toMatch(/host web-1 disconnected/);
    await expect(ops!.inventory()).rejects.toMatchObject({ code: "E_UNAVAILABLE" });
  });

  it("stages a release with blobs from the server, switches to it, and reports the new inventory", async () => {
    const changes: string[] = [];
    t.server.agents.onChange((change) => changes.push(`${change.type}:${change.host}`));
    await online(agent());

    // An artifact on the server, as CI would upload it.
    const tree = path.join(root, "..", `${path.basename(root)}-tree`);
    await makeTree(tree, { VERSION: "2.0.0\n", "bin/run.sh": { content: "echo run\n", mode: 0o755 } });
    const upload = await fetch(`${t.url}/api/v1/apps/shop/artifacts`, {
      method: "POST",
      headers: { authorization: `Bearer ${t.adminToken}`, "content-type": "application/x-tar" },
      body: await realTar(tree, false),
    });
    expect(upload.status, await upload.clone().text()).toBe(201);
    const { artifact } = (await upload.json()) as { artifact: { digest: string } };
    const { manifest } = (await t.api("GET", `/api/v1/artifacts/${artifact.digest}`)).body;
    await rm(tree, { recursive: true, force: true });

    const ops = t.server.agents.opsFor("web-1")!;
    const releaseId = artifact.digest.slice(0, 16);
    const log: string[] = [];
    const stage = () =>
      ops.stage(
        {
          app: "shop",
          releaseId,
          artifact: artifact.digest,
          manifest,
          shared: [],
          env: {},
          timeoutMs: 60_000,
        },
        { open: () => Promise.reject(new Error("agents fetch blobs themselves")) },
        (line) => log.push(line),
        new AbortController().signal,
      );
    // What a fleet deploy records before its stage call. (The call itself also lets the host's token
    // read that artifact while it runs: staging-read-access.test.ts; that a host token reads nothing
    // else, over HTTP: fleet-isolation.test.ts and artifacts/http.test.ts.)
    await t.store.fleet.sendArtifact([(await host())!.id], artifact.digest, "shop");
    const staged = await stage();
    expect(staged).toMatchObject({ staged: true, blobsFetched: 2 });
    expect(await ops.switchTo("shop", releaseId, "current")).toEqual({ previous: null });

    const current = path.join(root, "shop", "current");
    expect(lstatSync(current).isSymbolicLink()).toBe(true);
    expect(readlinkSync(current)).toContain(releaseId);
    expect(readFileSync(path.join(current, "VERSION"), "utf8")).toBe("2.0.0\n");
    expect(await ops.inventory()).toEqual([
      { app: "shop", releases: [releaseId], current: releaseId, slots: {} },
    ]);

    // The agent reports what changed without being asked; the API and CLI show it.
    await until(async () => (await host())?.apps?.[0]?.current === releaseId, 10_000, "inventory reported");
    expect(changes).toContain("inventory:web-1");
    const listed = await turnout(["hosts", "shop", "--server", t.url, "--token", t.adminToken]);
    expect(listed.stdout).toMatch(new RegExp(`^web-1 .* ${releaseId}$`, "m"));
    const all = await turnout(["hosts", "--server", t.url, "--token", t.adminToken]);
    expect(all.stdout).toMatch(new RegExp(`shop=${releaseId}$`, "m"));
  });
});
