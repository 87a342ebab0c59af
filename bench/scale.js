// Control plane at scale (docs/benchmarks.md, "Control plane at scale"): a
// one-file app deployed in batches to N simulated hosts (bench/agent-sim.js:
// real agent connections over in-memory hosts), N = 100, 300, 1,000, by one
// server on SQLite, one server on PostgreSQL and three servers sharing one
// PostgreSQL (the hosts spread over them in turn, as a load balancer would).
// Per deploy: wall time, server CPU per host (every server's utime+stime from
// /proc; also above idle: less what the servers spend anyway with N agents
// connected, for as long as the deploy took; and by thread and in the
// kernel), database statements per host (turnout_database_queries_total and
// by kind, less the harness's own /metrics scrapes), and server memory per
// connected agent (RSS after the agents connected minus before, over N).
// First it prints what this machine charges for a process creation and a
// PostgreSQL statement (lib.js machineCalibration), to compare machines.
// Run through bench/run.js (`node bench/run.js scale`).
//
//   TURNOUT_BENCH_SCALE=100,300         fleet sizes (default 100,300,1000)
//   TURNOUT_BENCH_SCALE_SETUPS=sqlite,pg,pg3   which setups (default all three)
//   TURNOUT_BENCH_SCALE_STAGE_DELAY=50  ms each simulated host takes to stage
//   TURNOUT_BENCH_SCALE_REPEAT=1        one-file deploys per size (median reported)
//   TURNOUT_BENCH_PG_URL                PostgreSQL (default postgres://postgres@127.0.0.1:5432/test)
//   TURNOUT_BENCH_SCALE_DEPLOY_TIMEOUT=900  seconds a deploy may take before the run stops and says where it was
import { execFileSync, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { performance } from "node:perf_hooks";
import pg from "pg";
import {
  machineCalibration,
  median,
  nodeArgs,
  processCpu,
  processCpuPrecise,
  ROOT,
  sleep,
  startServer,
  threadCpu,
  track,
} from "./lib.js";

const SIZES = (process.env.TURNOUT_BENCH_SCALE ?? "100,300,1000").split(",").map(Number);
const SETUPS = (process.env.TURNOUT_BENCH_SCALE_SETUPS ?? "sqlite,pg,pg3").split(",");
const STAGE_DELAY_MS = Number(process.env.TURNOUT_BENCH_SCALE_STAGE_DELAY ?? 50);
const REPEAT = Number(process.env.TURNOUT_BENCH_SCALE_REPEAT ?? 1);
const PG_URL = process.env.TURNOUT_BENCH_PG_URL ?? "postgres://postgres@127.0.0.1:5432/test";
const DEPLOY_TIMEOUT_MS = Number(process.env.TURNOUT_BENCH_SCALE_DEPLOY_TIMEOUT ?? 900) * 1000;
const DEPLOYS = "/api/v1/apps/bench/environments/production/deploys";
const KNOWN_SETUPS = {
  sqlite: { servers: 1, pg: false },
  pg: { servers: 1, pg: true },
  pg3: { servers: 3, pg: true },
};

const gitEnv = {
  ...process.env,
  GIT_AUTHOR_NAME: "b",
  GIT_AUTHOR_EMAIL: "b@b",
  GIT_COMMITTER_NAME: "b",
  GIT_COMMITTER_EMAIL: "b@b",
};
const git = (cwd, ...args) => execFileSync("git", args, { cwd, env: gitEnv, encoding: "utf8" }).trim();

// The rollout (TURNOUT_BENCH_SCALE_STRATEGY): how many batches a deploy has weighs on its CPU.
const STRATEGY = process.env.TURNOUT_BENCH_SCALE_STRATEGY ?? "{ canary: 1, batch: 10% }";

const manifest = (repo) => `repo: ${JSON.stringify(repo)}
environments:
  production:
    deploy:
      provider: fleet
      hosts: { labels: { role: sim } }
      build_script: |
        mkdir -p dist
        cp VERSION dist/VERSION
      artifact: dist
      restart: [systemctl, restart, bench]
      health: { command: [check-health], retries: 0, interval: 100ms }
      strategy: ${STRATEGY}
      timeout: 20m
`;

function rssKb(pid) {
  return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))[1]);
}

function stopChild(child) {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    const hard = setTimeout(() => child.kill("SIGKILL"), 20_000);
    child.once("exit", () => {
      clearTimeout(hard);
      resolve();
    });
    child.kill("SIGTERM");
  });
}

async function api(server, method, urlPath, body) {
  const res = await fetch(server.url + urlPath, {
    method,
    headers: { authorization: `Bearer ${server.token}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
    // A server that stops answering ends the run with an error rather than holding it forever.
    signal: AbortSignal.timeout(120_000),
  });
  const json = await res.json();
  if (!res.ok) throw new Error(`${method} ${urlPath}: HTTP ${res.status} ${JSON.stringify(json)}`);
  return json;
}

/**
 * One /metrics scrape: turnout_database_queries_total, the statements by
 * kind (turnout_database_statements_total{kind}; empty for a server without
 * it) and the V8 heap in use. A scrape runs statements of its own (queue
 * depths, locks, host states…), counted in the figures it returns: see
 * scrapeCost.
 */
async function scrape(server) {
  const res = await fetch(`${server.url}/metrics`, { headers: { authorization: `Bearer ${server.token}` } });
  const text = await res.text();
  const value = (name) => Number(new RegExp(`^${name} (\\S+)$`, "m").exec(text)?.[1] ?? Number.NaN);
  const kinds = new Map();
  for (const [, kind, count] of text.matchAll(
    /^turnout_database_statements_total\{kind="([^"]*)"\} (\S+)$/gm,
  ))
    kinds.set(kind, Number(count));
  return {
    queries: value("turnout_database_queries_total"),
    heap: value("nodejs_heap_size_used_bytes"),
    kinds,
  };
}

/** Every server scraped once: statements in all and by kind, summed over the servers. */
async function statementsOf(servers) {
  const scrapes = await Promise.all(servers.map(scrape));
  const kinds = new Map();
  for (const { kinds: k } of scrapes)
    for (const [kind, count] of k) kinds.set(kind, (kinds.get(kind) ?? 0) + count);
  return { queries: sum(scrapes.map((s) => s.queries)), kinds };
}

/**
 * The statements one scrape of every server adds to the count (by kind and
 * in all): the least of three back-to-back pairs, so that idle work between
 * them does not count. A deploy's figures are the difference of two scrapes,
 * which includes the second scrape's own statements: this is taken off.
 */
async function scrapeCost(servers) {
  let best;
  for (let i = 0; i < 3; i++) {
    const a = await statementsOf(servers);
    const b = await statementsOf(servers);
    if (!best || b.queries - a.queries < best.queries) {
      const kinds = new Map([...b.kinds].map(([kind, count]) => [kind, count - (a.kinds.get(kind) ?? 0)]));
      best = { queries: b.queries - a.queries, kinds };
    }
  }
  return best;
}

const sum = (values) => values.reduce((a, b) => a + b, 0);
const queriesOf = async (servers) => (await statementsOf(servers)).queries;
/**
 * The servers' CPU ms (processCpuPrecise); a reading remembers each server's
 * threads, and `cpuSince` falls back to /proc/<pid>/stat (10 ms ticks) for
 * a server whose threads changed meanwhile (an ended thread's time would be lost).
 */
const cpuOf = (servers) =>
  servers.map((s) => ({ ...processCpuPrecise(s.child.pid), coarse: processCpu(s.child.pid).own }));
function cpuSince(servers, before) {
  return sum(
    cpuOf(servers).map((now, i) =>
      now.threads === before[i].threads ? now.ms - before[i].ms : now.coarse - before[i].coarse,
    ),
  );
}
const systemCpuOf = (servers) => sum(servers.map((s) => processCpu(s.child.pid).system));
/** CPU ms by thread name, summed over the servers (see threadCpu). */
function threadsOf(servers) {
  const byName = new Map();
  for (const s of servers)
    for (const [name, ms] of threadCpu(s.child.pid)) byName.set(name, (byName.get(name) ?? 0) + ms);
  return byName;
}
const childCpuOf = (servers) => sum(servers.map((s) => processCpu(s.child.pid).children));

/** Starts bench/agent-sim.js with n hosts spread over the servers; resolves once all are connected. */
async function startSimulator(servers, token, n) {
  const child = track(
    spawn(
      process.execPath,
      [
        ...nodeArgs("TURNOUT_BENCH_SIM_NODE_ARGS"),
        path.join(ROOT, "bench", "agent-sim.js"),
        ...servers.flatMap((s) => ["--server", s.url]),
        "--hosts",
        String(n),
        "--label",
        "role=sim",
        "--stage-delay",
        String(STAGE_DELAY_MS),
      ],
      { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, TURNOUT_TOKEN: token } },
    ),
  );
  let output = "";
  child.stdout.setEncoding("utf8").on("data", (d) => (output += d));
  child.stderr.setEncoding("utf8").on("data", (d) => (output += d));
  const deadline = Date.now() + 300_000;
  while (!output.includes(`agent-sim: all ${n} connected`)) {
    if (child.exitCode !== null) throw new Error(`agent-sim exited: ${output.slice(-4000)}`);
    if (Date.now() > deadline) throw new Error(`agent-sim: not all connected: ${output.slice(-2000)}`);
    await sleep(100);
  }
  return { child, output: () => output, stop: () => stopChild(child) };
}

async function waitListedConnected(server, n) {
  const deadline = Date.now() + 120_000;
  for (;;) {
    const { hosts } = await api(server, "GET", "/api/v1/hosts");
    const connected = hosts.filter((h) => h.kind === "agent" && h.connected).length;
    if (connected >= n) return;
    if (Date.now() > deadline) throw new Error(`the server lists ${connected} of ${n} hosts connected`);
    await sleep(500);
  }
}

/** One deploy of `ref`, measured from the POST to its end as seen by polling server 0 twice a second. */
async function deployAndMeasure(servers, sim, ref, n, scraping, idle) {
  // The scrape first, then the CPU: the window holds the deploy, not the harness's scrapes.
  const statementsBefore = await statementsOf(servers);
  const cpuBefore = cpuOf(servers);
  const threadsBefore = threadsOf(servers);
  const systemBefore = systemCpuOf(servers);
  const childBefore = childCpuOf(servers);
  const simBefore = processCpu(sim.child.pid).own;
  const started = performance.now();
  const markedAt = process.hrtime.bigint();
  const reconnectsBefore = reconnections(sim);
  const { deploy } = await api(servers[0], "POST", DEPLOYS, { ref });
  let final;
  for (;;) {
    await sleep(500);
    final = (await api(servers[0], "GET", `/api/v1/deploys/${deploy.id}`)).deploy;
    if (["succeeded", "failed", "cancelled"].includes(final.status)) break;
    // A deploy that does not end is a finding, not a reason to wait forever: say where it stands.
    if (performance.now() - started > DEPLOY_TIMEOUT_MS) {
      throw new Error(
        `deploy ${deploy.id} still ${final.status} (phase ${final.phase}) after ${DEPLOY_TIMEOUT_MS / 1000} s; ` +
          `hosts by step ${JSON.stringify(await stepCounts(servers[0], deploy.id))}; ` +
          `${reconnections(sim) - reconnectsBefore} agent reconnection(s) during it`,
      );
    }
  }
  const wallMs = performance.now() - started;
  // The monotonic clock of --cpu-prof profiles (µs): bench/profile-window.js sums a profile over this window.
  if (process.env.TURNOUT_BENCH_SCALE_MARKS) {
    console.log(
      `scale: deploy ${deploy.id} window ${markedAt / 1000n}-${process.hrtime.bigint() / 1000n} µs`,
    );
  }
  const cpuMs = cpuSince(servers, cpuBefore);
  const threads = [...threadsOf(servers)]
    .map(([name, ms]) => [name, ms - (threadsBefore.get(name) ?? 0)])
    .filter(([, ms]) => ms > 0)
    .sort((a, b) => b[1] - a[1]);
  const systemMs = systemCpuOf(servers) - systemBefore;
  const childMs = childCpuOf(servers) - childBefore;
  const simMs = processCpu(sim.child.pid).own - simBefore;
  const statementsAfter = await statementsOf(servers);
  const queries = statementsAfter.queries - statementsBefore.queries - scraping.queries;
  const kinds = [...statementsAfter.kinds]
    .map(([kind, count]) => [
      kind,
      count - (statementsBefore.kinds.get(kind) ?? 0) - (scraping.kinds.get(kind) ?? 0),
    ])
    .filter(([, count]) => count > 0)
    .sort((a, b) => b[1] - a[1]);
  if (final.status !== "succeeded") {
    const log = await fetch(`${servers[0].url}/api/v1/deploys/${deploy.id}/log`, {
      headers: { authorization: `Bearer ${servers[0].token}` },
    }).then((r) => r.text());
    throw new Error(`deploy ${deploy.id} ${final.status}: ${final.errorMessage ?? ""}\n${log.slice(-3000)}`);
  }
  const { hosts } = await api(servers[0], "GET", `/api/v1/deploys/${deploy.id}/hosts`);
  const healthy = hosts.filter((h) => h.step === "healthy" && h.switched).length;
  if (healthy !== n) throw new Error(`deploy ${deploy.id}: ${healthy} of ${n} hosts healthy`);
  return {
    wallMs,
    cpuMs,
    cpuPerHostMs: cpuMs / n,
    // What the servers spend anyway with N agents connected (heartbeats, polls), measured just
    // before, taken off for the time the deploy took: the deploy's own cost.
    cpuAboveIdlePerHostMs: (cpuMs - (idle.cpuMsPerSecond * wallMs) / 1000) / n,
    systemPerHostMs: systemMs / n,
    childMs,
    queries,
    queriesPerHost: queries / n,
    simPerHostMs: simMs / n,
    reconnects: reconnections(sim) - reconnectsBefore,
    bytesPerHost: sum(hosts.map((h) => h.bytesFetched)) / n,
    kinds,
    threads,
  };
}

/** Agents that lost their connection so far (the simulator prints a line for each; see agent-simulator.ts). */
function reconnections(sim) {
  return sim
    .output()
    .split("\n")
    .filter((line) => line.includes("reconnecting in")).length;
}

async function stepCounts(server, deployId) {
  const { hosts } = await api(server, "GET", `/api/v1/deploys/${deployId}/hosts`);
  const counts = {};
  for (const h of hosts) counts[h.step] = (counts[h.step] ?? 0) + 1;
  return counts;
}

/** Retries while the server is still loading its manifests (503). */
async function whenLoaded(request) {
  for (let tries = 0; ; tries++) {
    try {
      return await request();
    } catch (error) {
      if (!/HTTP 503/.test(error.message) || tries > 600) throw error;
      await sleep(100);
    }
  }
}

async function createSchema() {
  const schema = `bench_scale_${randomBytes(5).toString("hex")}`;
  const client = new pg.Client({ connectionString: PG_URL });
  await client.connect();
  await client.query(`create schema ${schema}`);
  await client.end();
  const url = `${PG_URL}?options=${encodeURIComponent(`-c search_path=${schema}`)}`;
  return {
    url,
    drop: async () => {
      const c = new pg.Client({ connectionString: PG_URL });
      await c.connect();
      await c.query(`drop schema if exists ${schema} cascade`);
      await c.end();
    },
  };
}

async function runOne(work, setupName, n) {
  const setup = KNOWN_SETUPS[setupName];
  const dir = path.join(work, `${setupName}-n${n}`);
  const repo = path.join(dir, "app");
  mkdirSync(repo, { recursive: true });
  git(repo, "init", "-q", "--initial-branch=main");
  writeFileSync(path.join(repo, "VERSION"), "1\n");
  git(repo, "add", "-A");
  git(repo, "commit", "-qm", "one file");
  const database = setup.pg ? await createSchema() : undefined;
  const env = database ? { TURNOUT_DATABASE_URL: database.url } : {};
  const servers = [];
  let sim;
  try {
    for (let i = 0; i < setup.servers; i++) {
      servers.push(await startServer(path.join(dir, `server-${i}`), manifest(repo), env, servers[0]?.token));
    }
    // Each server's mirror cloned now (a running server has it from its poller), whichever claims the deploy.
    for (const server of servers)
      await whenLoaded(() => api(server, "GET", "/api/v1/apps/bench/environments/production/pending"));
    await sleep(2000);
    const rssBefore = servers.map((s) => rssKb(s.child.pid));
    const heapBefore = sum(await Promise.all(servers.map(async (s) => (await scrape(s)).heap)));
    const { token } = await api(servers[0], "POST", "/api/v1/tokens", {
      name: "sim",
      role: "agent",
      apps: ["bench"],
      labels: ["role=sim"],
    });
    const connectStarted = performance.now();
    sim = await startSimulator(servers, token, n);
    const connectMs = performance.now() - connectStarted;
    await waitListedConnected(servers[0], n);
    // The connections' first heartbeats and inventory writes are over; then the idle cost.
    await sleep(5000);
    const rssAfter = servers.map((s) => rssKb(s.child.pid));
    const heapAfter = sum(await Promise.all(servers.map(async (s) => (await scrape(s)).heap)));
    const scraping = await scrapeCost(servers);
    const idleStart = await queriesOf(servers);
    const idleCpu = cpuOf(servers);
    const idleStarted = performance.now();
    await sleep(15_000);
    const idleSeconds = (performance.now() - idleStarted) / 1000;
    // The CPU before the scrape, which would count its own.
    const idleCpuMs = cpuSince(servers, idleCpu);
    const idle = {
      queriesPerHostMinute:
        (((await queriesOf(servers)) - idleStart - scraping.queries) / n / idleSeconds) * 60,
      cpuPercent: (idleCpuMs / (idleSeconds * 1000)) * 100,
      cpuMsPerSecond: idleCpuMs / idleSeconds,
    };
    const memory = {
      rssKbPerAgent: sum(rssAfter.map((v, i) => v - rssBefore[i])) / n,
      heapKbPerAgent: (heapAfter - heapBefore) / 1024 / n,
    };

    const first = await deployAndMeasure(servers, sim, git(repo, "rev-parse", "HEAD"), n, scraping, idle);
    const changes = [];
    for (let r = 0; r < REPEAT; r++) {
      writeFileSync(path.join(repo, "VERSION"), `${r + 2}\n`);
      git(repo, "commit", "-qam", `change ${r + 2}`);
      changes.push(await deployAndMeasure(servers, sim, git(repo, "rev-parse", "HEAD"), n, scraping, idle));
      if (process.env.TURNOUT_BENCH_SCALE_EACH)
        console.log(
          `scale: one-file deploy ${r + 1}: ${f1(changes.at(-1).wallMs / 1000)} s, ${f1(changes.at(-1).cpuPerHostMs)} ms/host (${f1(changes.at(-1).cpuAboveIdlePerHostMs)} above idle)`,
        );
    }
    const pick = (key) => median(changes.map((c) => c[key]));
    const oneFile = Object.fromEntries(
      Object.keys(changes[0])
        .filter((k) => k !== "kinds" && k !== "threads")
        .map((k) => [k, pick(k)]),
    );
    oneFile.kinds = changes.at(-1).kinds;
    oneFile.threads = changes.at(-1).threads;
    return { setup: setupName, servers: setup.servers, n, connectMs, memory, idle, first, oneFile };
  } catch (error) {
    for (const s of servers)
      console.error(`--- server output (last 3000 characters)\n${s.output().slice(-3000)}`);
    if (sim) console.error(`--- agent-sim output\n${sim.output().slice(-3000)}`);
    throw error;
  } finally {
    await sim?.stop();
    for (const s of servers) await s.stop();
    await database?.drop().catch(() => undefined);
  }
}

const f1 = (v) => v.toFixed(1);

function printRow(r) {
  const tag = `scale ${r.setup.padEnd(6)} N=${String(r.n).padEnd(4)}`;
  console.log(
    `${tag} one-file deploy ${f1(r.oneFile.wallMs / 1000)} s; server CPU ${f1(r.oneFile.cpuPerHostMs)} ms/host (budget < 5, flat); ` +
      `${f1(r.oneFile.queriesPerHost)} statements/host; memory ${f1(r.memory.rssKbPerAgent)} KB RSS/agent (budget < 200, flat), heap ${f1(r.memory.heapKbPerAgent)} KB/agent`,
  );
  console.log(
    `${tag} first release ${f1(r.first.wallMs / 1000)} s, ${f1(r.first.cpuPerHostMs)} ms/host, ${f1(r.first.queriesPerHost)} statements/host; ` +
      `git+build children ${r.oneFile.childMs.toFixed(0)} ms; simulator CPU ${f1(r.oneFile.simPerHostMs)} ms/host; ` +
      `${r.n} agents connected in ${f1(r.connectMs / 1000)} s; idle: ${f1(r.idle.queriesPerHostMinute)} statements/host/min, servers ${f1(r.idle.cpuPercent)}% of a core; ` +
      `agent reconnections during the deploys ${r.first.reconnects} + ${r.oneFile.reconnects}`,
  );
  // Which threads spent the CPU (the last one-file deploy, summed over the servers).
  console.log(
    `${tag} CPU above idle ${f1(r.oneFile.cpuAboveIdlePerHostMs)} ms/host (the servers' idle rate with N agents, ${f1(r.idle.cpuPercent)}% of a core, taken off for the deploy's wall time); in the kernel ${f1(r.oneFile.systemPerHostMs)} ms/host; by thread: ${r.oneFile.threads.map(([name, ms]) => `${name} ${f1(ms / r.n)}`).join(", ")} ms/host`,
  );
  // Where the statements go (the last one-file deploy; the harness's own /metrics scrapes taken off, see scrapeCost).
  for (const [kind, count] of r.oneFile.kinds)
    console.log(
      `${tag} statements by kind: ${f1(count / r.n).padStart(5)}/host ${String(count).padStart(6)}  ${kind}`,
    );
}

export async function runScale(work) {
  for (const setup of SETUPS) {
    if (!(setup in KNOWN_SETUPS))
      throw new Error(`unknown setup ${setup}; known: ${Object.keys(KNOWN_SETUPS).join(", ")}`);
  }
  console.log(
    `scale: setups ${SETUPS.join(", ")}; N = ${SIZES.join(", ")}; simulated staging ${STAGE_DELAY_MS} ms per host; ${REPEAT} one-file deploy(s) per size`,
  );
  // This machine's prices for what a server repeats (see machineCalibration): figures from two
  // machines compare only with these beside them.
  const machine = await machineCalibration(SETUPS.some((s) => KNOWN_SETUPS[s].pg) ? PG_URL : undefined);
  console.log(
    `scale: machine: process creation ${f1(machine.spawnMs)} ms CPU, a 1e8 loop ${machine.loopMs.toFixed(0)} ms` +
      (machine.statementUs === undefined
        ? ""
        : `, a trivial PostgreSQL statement ${machine.statementUs.toFixed(0)} µs of client CPU`),
  );
  const rows = [];
  for (const setup of SETUPS) {
    for (const n of SIZES) {
      const row = await runOne(work, setup, n);
      rows.push(row);
      printRow(row);
    }
  }
  console.log("");
  console.log(
    " setup  |    N | servers | one-file s | CPU ms/host | above idle | statements/host | RSS KB/agent | heap KB/agent | first release s (CPU ms/host)",
  );
  for (const r of rows) {
    console.log(
      [
        ` ${r.setup.padEnd(6)}`,
        String(r.n).padStart(4),
        String(r.servers).padStart(7),
        f1(r.oneFile.wallMs / 1000).padStart(10),
        f1(r.oneFile.cpuPerHostMs).padStart(11),
        f1(r.oneFile.cpuAboveIdlePerHostMs).padStart(10),
        f1(r.oneFile.queriesPerHost).padStart(15),
        f1(r.memory.rssKbPerAgent).padStart(12),
        f1(r.memory.heapKbPerAgent).padStart(13),
        ` ${f1(r.first.wallMs / 1000)} (${f1(r.first.cpuPerHostMs)})`,
      ].join(" |"),
    );
  }
  return rows;
}
