// Shared by the benchmarks of bench/: the built server as a real process, its
// API, and the figures' output format.
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
export const BIN = path.join(ROOT, "bin", "turnout.js");

/** Debian's chromium (what `.ci/run` installs); TURNOUT_BENCH_CHROMIUM points elsewhere. */
export const CHROMIUM = process.env["TURNOUT_BENCH_CHROMIUM"] ?? "/usr/bin/chromium";
/** Headless, and nothing that reaches the network or varies between runs. */
export const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

export function freePort() {
  return new Promise((resolve) => {
    const srv = createServer().listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

export function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Every child process a benchmark started and has not seen exit: killed if the run is interrupted. */
export const children = new Set();
export function track(child) {
  children.add(child);
  child.once("exit", () => children.delete(child));
  return child;
}
export function killAll() {
  for (const child of children) child.kill("SIGKILL");
}

/**
 * Extra node flags for the processes a benchmark starts, from the environment
 * (space-separated), e.g. TURNOUT_BENCH_SERVER_NODE_ARGS="--cpu-prof
 * --cpu-prof-dir=/tmp/prof" to profile the server (NODE_OPTIONS refuses --cpu-prof).
 */
export function nodeArgs(variable) {
  return (process.env[variable] ?? "").split(" ").filter(Boolean);
}

/** `turnout server` from bin/, with a data and a config directory of its own under `dir`. */
/**
 * One `turnout server` on a free loopback port. `token`: the admin token to use
 * (a server sharing another's database has none of its own in its data directory).
 */
export async function startServer(dir, manifest, extraEnv = {}, token = undefined) {
  const configDir = path.join(dir, "turnout.d");
  const dataDir = path.join(dir, "data");
  mkdirSync(configDir, { recursive: true });
  if (manifest) writeFileSync(path.join(configDir, "bench.yaml"), manifest);
  const port = await freePort();
  const started = process.hrtime.bigint();
  const child = spawn(
    process.execPath,
    [
      ...nodeArgs("TURNOUT_BENCH_SERVER_NODE_ARGS"),
      BIN,
      "server",
      "--port",
      String(port),
      "--data-dir",
      dataDir,
      "--config-dir",
      configDir,
    ],
    {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, TURNOUT_DATABASE_URL: "", ...extraEnv },
    },
  );
  track(child);
  let output = "";
  child.stdout.on("data", (d) => (output += d));
  child.stderr.on("data", (d) => (output += d));
  const url = `http://127.0.0.1:${port}`;
  for (;;) {
    try {
      const res = await fetch(`${url}/healthz`);
      if (res.ok) break;
    } catch {
      // not up yet
    }
    if (child.exitCode !== null) throw new Error(`server exited: ${output}`);
    await sleep(5);
  }
  const coldStartMs = Number(process.hrtime.bigint() - started) / 1e6;
  return {
    url,
    port,
    token: token ?? readFileSync(path.join(dataDir, "admin-token"), "utf8").trim(),
    child,
    dataDir,
    coldStartMs,
    output: () => output,
    stop: () =>
      new Promise((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        child.once("exit", resolve);
        child.kill("SIGTERM");
      }),
  };
}

export async function api(server, method, urlPath, body) {
  const res = await fetch(server.url + urlPath, {
    method,
    headers: { authorization: `Bearer ${server.token}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = await res.json();
  if (!res.ok) throw new Error(`${method} ${urlPath}: HTTP ${res.status} ${JSON.stringify(json)}`);
  return json;
}

export async function waitFinished(server, id, intervalMs = 50) {
  for (;;) {
    const { deploy } = await api(server, "GET", `/api/v1/deploys/${id}`);
    if (["succeeded", "failed", "cancelled"].includes(deploy.status)) return deploy;
    await sleep(intervalMs);
  }
}

const CLK_TCK = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;

/** A process's own CPU time (utime + stime) and that of the children it waited for (git), in ms. */
export function processCpu(pid) {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(")").pop().trim().split(/\s+/).map(Number);
  const ms = (ticks) => (ticks * 1000) / CLK_TCK;
  // The main thread alone (its task has the process's id): what a server's deploy chain runs on.
  const main = readFileSync(`/proc/${pid}/task/${pid}/stat`, "utf8")
    .split(")")
    .pop()
    .trim()
    .split(/\s+/)
    .map(Number);
  return {
    own: ms(fields[11] + fields[12]),
    user: ms(fields[11]),
    system: ms(fields[12]),
    children: ms(fields[13] + fields[14]),
    mainThread: ms(main[11] + main[12]),
  };
}

/**
 * A process's own CPU time in ms, to the nanosecond: the sum of its threads'
 * run time (/proc/<pid>/task/<tid>/schedstat, the scheduler's own count).
 * /proc/<pid>/stat gives the same total in clock ticks (10 ms), and two
 * readings per process and deploy made a deploy of 100 hosts, about half a
 * second of CPU over three servers, ±0.2 ms per host of rounding alone.
 * The time of threads that ended is not in it: `threads` (their ids) lets
 * the caller see that the set changed between two readings.
 */
export function processCpuPrecise(pid) {
  let ns = 0;
  const threads = [];
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      ns += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, "utf8").split(" ")[0]);
      threads.push(tid);
    } catch {
      // The thread ended between the listing and the read.
    }
  }
  return { ms: ns / 1e6, threads: threads.sort().join(",") };
}

/**
 * CPU ms by thread name (/proc/<pid>/task/<tid>/comm: "node" is the main
 * thread, "V8 Worker" the GC and compiler helpers, "libuv-worker" the thread
 * pool, worker threads by the name they were given), summed over threads of a
 * name. Threads that ended before the call are not counted.
 */
export function threadCpu(pid) {
  const byName = new Map();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, "utf8");
      const name = tid === String(pid) ? "main" : stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
      const fields = stat.split(")").pop().trim().split(/\s+/).map(Number);
      byName.set(name, (byName.get(name) ?? 0) + ((fields[11] + fields[12]) * 1000) / CLK_TCK);
    } catch {
      // The thread ended between the listing and the read.
    }
  }
  return byName;
}

/**
 * What this machine charges for the operations a server repeats, so that
 * figures taken on two machines can be compared: the CPU of a process
 * creation (spawnSync of `true`, the parent's share), a fixed JavaScript
 * loop, and — given a PostgreSQL URL — the client CPU of one trivial
 * statement through node-postgres (sequential, after a warm-up).
 */
export async function machineCalibration(pgUrl) {
  const cpuMs = () => {
    const u = process.cpuUsage();
    return (u.user + u.system) / 1000;
  };
  let before = cpuMs();
  for (let i = 0; i < 20; i++) spawnSync("true");
  const spawnMs = (cpuMs() - before) / 20;
  before = performance.now();
  let x = 0;
  for (let i = 0; i < 1e8; i++) x += i % 7;
  const loopMs = performance.now() - before + (x < 0 ? 1 : 0);
  let statementUs;
  if (pgUrl) {
    const { default: pg } = await import("pg");
    const client = new pg.Client({ connectionString: pgUrl });
    await client.connect();
    for (let i = 0; i < 200; i++) await client.query("select $1::int as x", [i]);
    before = cpuMs();
    for (let i = 0; i < 1000; i++) await client.query("select $1::int as x", [i]);
    statementUs = ((cpuMs() - before) / 1000) * 1000;
    await client.end();
  }
  return { spawnMs, loopMs, statementUs };
}

/** A git repository at `dir` with one commit of one file, VERSION = 1 (the core benchmarks' app). */
export function makeOneCommitRepo(dir) {
  mkdirSync(dir, { recursive: true });
  const git = (...args) =>
    execFileSync("git", args, {
      cwd: dir,
      env: {
        ...process.env,
        GIT_AUTHOR_NAME: "b",
        GIT_AUTHOR_EMAIL: "b@b",
        GIT_COMMITTER_NAME: "b",
        GIT_COMMITTER_EMAIL: "b@b",
      },
    });
  git("init", "-q", "--initial-branch=main");
  writeFileSync(path.join(dir, "VERSION"), "1\n");
  git("add", "-A");
  git("commit", "-qm", "one");
}

export function rssMb(pid) {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  return Number(/VmRSS:\s+(\d+)/.exec(status)[1]) / 1024;
}

// CPU time the hypervisor gave to other guests ("steal"): on a shared VM it
// can halve throughput, so every run reports it next to its figures.
export function cpuTimes() {
  const fields = readFileSync("/proc/stat", "utf8").split("\n")[0].trim().split(/\s+/).slice(1).map(Number);
  return { total: fields.reduce((a, b) => a + b, 0), steal: fields[7] ?? 0 };
}

export function stealPercent(from, to) {
  return ((to.steal - from.steal) / Math.max(1, to.total - from.total)) * 100;
}

export function report(name, value, unit, budget) {
  const line = `${name.padEnd(44)} ${value.toFixed(unit === "req/s" ? 0 : 1).padStart(9)} ${unit.padEnd(6)} budget ${budget}`;
  console.log(line);
  return line;
}
