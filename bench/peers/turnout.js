// Turnout in the peer benchmark: the built `turnout server` as a real
// process, fresh for each fleet size, repetition and mode (so a full release
// starts from empty hosts and an empty server), deploying to the same hosts
// as the peers:
//   agents  one real `turnout agent` per host whose root is inside that host's
//           directory; it reaches the server through the host's byte-counting
//           proxy, so its bytes are counted like an sshd's
//   ssh     the hosts' sshds, as `ssh:` hosts of the fleet environment
// The mirror's first clone is done before the clock starts (a running server
// has it from its poller) and reported apart.
import { spawn } from "node:child_process";
import { mkdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { api, BIN, ROOT, sleep, startServer, track } from "../lib.js";
import { hostAddress, MOUNT, SSH_PORT, startProxy } from "./hosts.js";

const DEPLOYS = "/api/v1/apps/bench/environments/production/deploys";

function manifest(ctx, mode, dir) {
  const head = `repo: ${JSON.stringify(ctx.gitUrl)}
environments:
  production:
    deploy:
      provider: fleet
      strategy: { batch: 100%, concurrency: 100 }
      timeout: 20m
`;
  if (mode === "agents") return `${head}      hosts: { labels: { role: web } }\n`;
  return `${head}      ssh_defaults:
        user: root
        port: ${SSH_PORT}
        key_file: ${JSON.stringify(ctx.keys.key)}
        known_hosts_file: ${JSON.stringify(ctx.keys.knownHosts)}
        root: ${JSON.stringify(`${MOUNT}/${dir}`)}
      ssh:
${ctx.hosts.map((h) => `        - { name: ${h.name}, address: ${JSON.stringify(h.address)} }\n`).join("")}`;
}

function statusKb(pid, field) {
  try {
    return Number(new RegExp(`${field}:\\s+(\\d+)`).exec(readFileSync(`/proc/${pid}/status`, "utf8"))[1]);
  } catch {
    return Number.NaN;
  }
}

/**
 * The agent hosts run: the bundled file users install (the default), or
 * `turnout agent` from the package with TURNOUT_BENCH_AGENT=cli.
 */
const AGENT_COMMAND =
  process.env.TURNOUT_BENCH_AGENT === "cli"
    ? [BIN, "agent"]
    : [path.join(ROOT, "dist", "agent", "turnout-agent.cjs")];

function startAgent(url, token, host, root) {
  mkdirSync(root, { recursive: true });
  const child = track(
    spawn(
      process.execPath,
      [
        ...AGENT_COMMAND,
        "--server",
        url,
        "--token",
        token,
        "--name",
        host.name,
        "--root",
        root,
        "--label",
        "role=web",
      ],
      { env: { PATH: process.env.PATH, HOME: root }, stdio: ["ignore", "pipe", "pipe"] },
    ),
  );
  let output = "";
  child.stdout.on("data", (d) => (output += d));
  child.stderr.on("data", (d) => (output += d));
  return { child, output: () => output };
}

async function waitConnected(server, names, agents) {
  const deadline = Date.now() + 120_000;
  for (;;) {
    const { hosts } = await api(server, "GET", "/api/v1/hosts");
    const up = new Set(hosts.filter((h) => h.connected).map((h) => h.name));
    if (names.every((n) => up.has(n))) return;
    const dead = agents.find((a) => a.child.exitCode !== null);
    if (dead) throw new Error(`agent exited: ${dead.output().slice(-2000)}`);
    if (Date.now() > deadline) throw new Error(`agents not connected: ${up.size} of ${names.length}`);
    await sleep(200);
  }
}

function stopChild(child) {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    const hard = setTimeout(() => child.kill("SIGKILL"), 5000);
    child.once("exit", () => {
      clearTimeout(hard);
      resolve();
    });
    child.kill("SIGTERM");
  });
}

/**
 * A Turnout "tool" for the harness: `start` brings up the server (and agents)
 * for one fleet size and repetition, `deploy` posts a deploy and waits for its
 * end, `stop` ends every process it started.
 */
export function turnoutTool(mode) {
  let server;
  let agents = [];
  let proxies = [];
  return {
    name: `turnout-${mode}`,
    label: mode === "agents" ? "Turnout, agents" : "Turnout, SSH hosts",
    async prepare() {},
    async start(ctx, dir) {
      server = await startServer(
        path.join(ctx.work, "turnout", dir.replaceAll("/", "-")),
        manifest(ctx, mode, dir),
      );
      const extra = {};
      // The config directory is read after /healthz answers: wait until the app is there.
      for (let i = 0; ; i++) {
        const res = await fetch(`${server.url}/api/v1/apps/bench`, {
          headers: { authorization: `Bearer ${server.token}` },
        });
        if (res.ok) break;
        if (i > 600) throw new Error(`app not loaded: ${server.output().slice(-2000)}`);
        await sleep(100);
      }
      if (mode === "agents") {
        const { token } = await api(server, "POST", "/api/v1/tokens", {
          name: "bench",
          role: "agent",
          apps: ["bench"],
          labels: ["role=web"],
        });
        // Each agent reaches the server through its host's proxy (its own loopback address).
        proxies = await Promise.all(
          ctx.hosts.map((h) => startProxy(hostAddress(h.index), 0, "127.0.0.1", server.port)),
        );
        agents = ctx.hosts.map((h, i) =>
          startAgent(`http://${hostAddress(h.index)}:${proxies[i].port}`, token, h, path.join(h.srv, dir)),
        );
        await waitConnected(
          server,
          ctx.hosts.map((h) => h.name),
          agents,
        );
        await sleep(1000);
        extra.agentIdleRssKb = agents.map((a) => statusKb(a.child.pid, "VmRSS"));
      }
      const cloneStarted = performance.now();
      await api(server, "GET", "/api/v1/apps/bench/environments/production/pending");
      extra.cloneMs = performance.now() - cloneStarted;
      return extra;
    },
    /** Bytes through this mode's own counters (agents: their proxies to the server), both directions. */
    agentWire: () => proxies.reduce((sum, p) => sum + p.up + p.down, 0),
    async deploy(ctx, _dir, release) {
      const { deploy } = await api(server, "POST", DEPLOYS, { ref: ctx.app.refs[release] });
      for (;;) {
        const answer = (await api(server, "GET", `/api/v1/deploys/${deploy.id}`)).deploy;
        if (answer.status === "succeeded") break;
        if (["failed", "cancelled"].includes(answer.status)) {
          throw new Error(`turnout deploy ${deploy.id} ${answer.status}: ${answer.errorMessage ?? ""}`);
        }
        await sleep(100);
      }
      const { hosts } = await api(server, "GET", `/api/v1/deploys/${deploy.id}/hosts`);
      return { deployId: deploy.id, hostsRecorded: hosts.length };
    },
    agentPeakRssKb: () => agents.map((a) => statusKb(a.child.pid, "VmHWM")),
    agentRssKb: () => agents.map((a) => statusKb(a.child.pid, "VmRSS")),
    async stop() {
      await Promise.all(agents.map((a) => stopChild(a.child)));
      for (const p of proxies) await p.close();
      if (server) await server.stop();
      agents = [];
      proxies = [];
      server = undefined;
    },
    /** The agents' paths differ from the ssh hosts': `<root>/<app>`. */
    currentDir: (dir) => `${dir}/bench`,
  };
}
