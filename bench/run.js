#!/usr/bin/env node
// `npm run bench`: the performance budget of docs/benchmarks.md, measured on
// the built server as a real process. Prints one line per figure with the
// budget next to it. Nothing here is asserted by the test suite.
import { execFileSync, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { cpus, tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import autocannon from "autocannon";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const BIN = path.join(ROOT, "bin", "turnout.js");
const work = mkdtempSync(path.join(tmpdir(), "turnout-bench-"));

function freePort() {
  return new Promise((resolve) => {
    const srv = createServer().listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

function makeRepo(dir) {
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

async function startServer(name, manifest) {
  const dir = path.join(work, name);
  const configDir = path.join(dir, "turnout.d");
  mkdirSync(configDir, { recursive: true });
  if (manifest) writeFileSync(path.join(configDir, "bench.yaml"), manifest);
  const port = await freePort();
  const started = process.hrtime.bigint();
  const child = spawn(
    process.execPath,
    [BIN, "server", "--port", String(port), "--data-dir", path.join(dir, "data"), "--config-dir", configDir],
    {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, TURNOUT_DATABASE_URL: "" },
    },
  );
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
    await new Promise((r) => setTimeout(r, 5));
  }
  const coldStartMs = Number(process.hrtime.bigint() - started) / 1e6;
  const token = readFileSync(path.join(dir, "data", "admin-token"), "utf8").trim();
  return {
    url,
    token,
    child,
    coldStartMs,
    stop: () =>
      new Promise((resolve) => {
        child.once("exit", resolve);
        child.kill("SIGTERM");
      }),
  };
}

function rssMb(pid) {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  return Number(/VmRSS:\s+(\d+)/.exec(status)[1]) / 1024;
}

async function api(server, method, urlPath, body) {
  const res = await fetch(server.url + urlPath, {
    method,
    headers: { authorization: `Bearer ${server.token}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return res.json();
}

async function waitFinished(server, id) {
  for (;;) {
    const { deploy } = await api(server, "GET", `/api/v1/deploys/${id}`);
    if (["succeeded", "failed", "cancelled"].includes(deploy.status)) return deploy;
    await new Promise((r) => setTimeout(r, 50));
  }
}

// Watches for the probe's file without asking the server anything, so the
// harness does not compete with the deploy it is timing.
async function waitForFile(file) {
  for (;;) {
    try {
      return statSync(file);
    } catch {
      await new Promise((r) => setTimeout(r, 1));
    }
  }
}

// CPU time the hypervisor gave to other guests ("steal"): on a shared VM it
// can halve throughput, so every run reports it next to its figures.
function cpuTimes() {
  const fields = readFileSync("/proc/stat", "utf8").split("\n")[0].trim().split(/\s+/).slice(1).map(Number);
  return { total: fields.reduce((a, b) => a + b, 0), steal: fields[7] ?? 0 };
}
const cpuAtStart = cpuTimes();

const results = [];
function report(name, value, unit, budget) {
  const line = `${name.padEnd(44)} ${value.toFixed(unit === "req/s" ? 0 : 1).padStart(9)} ${unit.padEnd(6)} budget ${budget}`;
  results.push(line);
  console.log(line);
}

try {
  console.log(`turnout bench: node ${process.version}, ${cpus().length} cores (${cpus()[0]?.model ?? "?"})`);

  // 1. Cold start to healthy, and idle memory.
  const starts = [];
  for (let i = 0; i < 5; i++) {
    const server = await startServer(`cold-${i}`);
    starts.push(server.coldStartMs);
    if (i === 4) {
      await new Promise((r) => setTimeout(r, 3000));
      report("idle RSS after start (MB)", rssMb(server.child.pid), "MB", "< 120 MB");
    }
    await server.stop();
  }
  report("cold start to healthy, median of 5", median(starts), "ms", "< 1500 ms");

  // 2. POST …/deploys to the deploy's first command starting.
  const repo = path.join(work, "repo");
  makeRepo(repo);
  // The probe command is `touch`: its file's mtime is the moment the command ran.
  const traceDir = path.join(work, "trace");
  mkdirSync(traceDir);
  const server = await startServer(
    "latency",
    `repo: ${JSON.stringify(repo)}\nenvironments:\n  staging:\n    deploy:\n      provider: shell\n      command: [touch, ${JSON.stringify(path.join(traceDir, "{deploy}"))}]\n`,
  );
  const latencies = [];
  for (let i = 0; i < 30; i++) {
    const before = Date.now();
    const { deploy } = await api(server, "POST", "/api/v1/apps/bench/environments/staging/deploys", {});
    const touched = await waitForFile(path.join(traceDir, String(deploy.id)));
    latencies.push(touched.mtimeMs - before);
    const done = await waitFinished(server, deploy.id);
    if (done.status !== "succeeded") throw new Error(`bench deploy failed: ${JSON.stringify(done)}`);
  }
  report("POST deploy -> command running, median of 30", median(latencies), "ms", "< 50 ms");

  // 3. Read endpoints.
  for (const [label, urlPath] of [
    ["GET /api/v1/apps", "/api/v1/apps"],
    ["GET /api/v1/deploys/:id", "/api/v1/deploys/1"],
  ]) {
    // One second of warm-up (JIT, connection setup), then the measured run.
    await autocannon({
      url: server.url + urlPath,
      connections: 16,
      duration: 1,
      headers: { authorization: `Bearer ${server.token}` },
    });
    const result = await autocannon({
      url: server.url + urlPath,
      connections: 16,
      duration: 5,
      headers: { authorization: `Bearer ${server.token}` },
    });
    if (result.non2xx > 0) throw new Error(`${label}: ${result.non2xx} non-2xx answers`);
    report(`${label} (16 connections, 5 s)`, result.requests.average, "req/s", "> 3000 req/s");
  }
  await server.stop();
  const cpuAtEnd = cpuTimes();
  const steal = ((cpuAtEnd.steal - cpuAtStart.steal) / Math.max(1, cpuAtEnd.total - cpuAtStart.total)) * 100;
  console.log(
    `CPU steal during the run: ${steal.toFixed(1)}% (time the VM's cores were taken by other guests)`,
  );
} finally {
  rmSync(work, { recursive: true, force: true });
}
