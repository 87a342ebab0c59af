// Fleets (docs/benchmarks.md, "Fleets"): a generated app of about 3,000
// files and 50 MB deployed by the built server to 1, 5, 20 and 50 real
// `turnout agent` processes on this machine, each with a root of its own:
// first a full release, then a release with one changed file. Next to it, the
// physical baseline: `git archive | tar -x` of the same commit into N
// directories at once. Run through bench/run.js (`npm run bench:fleet`).
import { execFileSync, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, readFileSync, readlinkSync, writeFileSync } from "node:fs";
import path from "node:path";
import { performance } from "node:perf_hooks";
import Database from "better-sqlite3";
import {
  api,
  BIN,
  cpuTimes,
  median,
  nodeArgs,
  processCpu,
  ROOT,
  sleep,
  startServer,
  stealPercent,
  track,
} from "./lib.js";

const FILES = 3000;
const BYTES = 50 * 1024 * 1024;
/** Fleet sizes; TURNOUT_BENCH_FLEET=1,5 runs fewer (trials only: the documented figures use all four). */
const SIZES = (process.env.TURNOUT_BENCH_FLEET ?? "1,5,20,50").split(",").map(Number);
const DEPLOYS = "/api/v1/apps/bench/environments/production/deploys";
/**
 * Which agent the hosts run: the bundled file users install
 * (dist/agent/turnout-agent.cjs, the default) or `turnout agent` from the
 * package (TURNOUT_BENCH_AGENT=cli), for comparison.
 */
const AGENT_KIND = process.env.TURNOUT_BENCH_AGENT === "cli" ? "cli" : "bundle";
const AGENT_COMMAND =
  AGENT_KIND === "cli" ? [BIN, "agent"] : [path.join(ROOT, "dist", "agent", "turnout-agent.cjs")];

const gitEnv = {
  ...process.env,
  GIT_AUTHOR_NAME: "b",
  GIT_AUTHOR_EMAIL: "b@b",
  GIT_COMMITTER_NAME: "b",
  GIT_COMMITTER_EMAIL: "b@b",
};
const git = (cwd, ...args) => execFileSync("git", args, { cwd, env: gitEnv, encoding: "utf8" }).trim();

/** Deterministic sizes and paths (so every run deploys the same shape), random content (so nothing compresses). */
function generateApp(dir) {
  let seed = 0x7e57;
  const random = () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  // Most files small to medium (100 B – 64 KiB, log-uniform), 24 large ones take the rest.
  const large = 24;
  const sizes = Array.from({ length: FILES - large }, () =>
    Math.round(100 * Math.exp(random() * Math.log(655.36))),
  );
  const rest = BYTES - sizes.reduce((a, b) => a + b, 0);
  const weights = Array.from({ length: large }, () => 0.5 + random());
  const weightSum = weights.reduce((a, b) => a + b, 0);
  for (const w of weights) sizes.push(Math.round((rest * w) / weightSum));
  const files = sizes.map((size, i) => {
    const depth = i % 4;
    const parts = [`pkg${i % 9}`, `mod${i % 7}`, `part${i % 5}`].slice(0, depth);
    return { path: path.join(...parts, `f${i}.${i >= FILES - large ? "bin" : "dat"}`), size };
  });
  mkdirSync(dir, { recursive: true });
  for (const file of files) {
    mkdirSync(path.join(dir, path.dirname(file.path)), { recursive: true });
    writeFileSync(path.join(dir, file.path), randomBytes(file.size));
  }
  // The file the second release changes: 8 KiB, new random content.
  const changed = path.join(dir, "pkg1", "changed.dat");
  writeFileSync(changed, randomBytes(8192));
  git(dir, "init", "-q", "--initial-branch=main");
  git(dir, "config", "gc.auto", "0");
  git(dir, "add", "-A");
  git(dir, "commit", "-qm", "a generated app");
  const base = git(dir, "rev-parse", "HEAD");
  writeFileSync(changed, randomBytes(8192));
  git(dir, "commit", "-qam", "one changed file");
  const oneFile = git(dir, "rev-parse", "HEAD");
  return { base, oneFile, files: files.length + 1, bytes: BYTES + 8192 };
}

const manifest = (repo) => `repo: ${JSON.stringify(repo)}
environments:
  production:
    deploy:
      provider: fleet
      hosts: { labels: { role: web } }
      strategy: { batch: 100%, concurrency: 50 }
      timeout: 20m
`;

function startAgent(serverUrl, token, name, root) {
  mkdirSync(root, { recursive: true });
  const child = spawn(
    process.execPath,
    [
      ...nodeArgs("TURNOUT_BENCH_AGENT_NODE_ARGS"),
      ...AGENT_COMMAND,
      "--server",
      serverUrl,
      "--token",
      token,
      "--name",
      name,
      "--root",
      root,
      "--label",
      "role=web",
    ],
    {
      env: {
        PATH: process.env.PATH,
        HOME: root,
      },
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  track(child);
  let output = "";
  child.stdout.setEncoding("utf8").on("data", (d) => (output += d));
  child.stderr.setEncoding("utf8").on("data", (d) => (output += d));
  return { name, root, child, output: () => output };
}

async function stopAgents(agents) {
  await Promise.all(
    agents.map(
      ({ child }) =>
        new Promise((resolve) => {
          if (child.exitCode !== null || child.signalCode !== null) return resolve();
          const hard = setTimeout(() => child.kill("SIGKILL"), 5000);
          child.once("exit", () => {
            clearTimeout(hard);
            resolve();
          });
          child.kill("SIGTERM");
        }),
    ),
  );
}

async function waitForHosts(server, agents, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { hosts } = await api(server, "GET", "/api/v1/hosts");
    const connected = new Set(hosts.filter((h) => h.connected).map((h) => h.name));
    if (agents.every((a) => connected.has(a.name))) return;
    const dead = agents.find((a) => a.child.exitCode !== null);
    if (dead) throw new Error(`agent ${dead.name} exited: ${dead.output()}`);
    if (Date.now() > deadline) {
      throw new Error(`only ${connected.size} of ${agents.length} agents connected after ${timeoutMs} ms`);
    }
    await sleep(250);
  }
}

/**
 * Bytes the agents' TCP sockets to the server have received (what the server
 * sent them: WebSocket messages, blob responses, headers), from the kernel's
 * per-socket counters (`ss -ti`). Keyed by socket, so a socket that closed
 * between two readings can be noticed.
 */
function agentSocketBytes(port, agentPids) {
  const out = execFileSync("ss", ["-tinpH", "state", "connected", `( dport = :${port} )`], {
    encoding: "utf8",
  });
  const sockets = new Map();
  let current;
  for (const line of out.split("\n")) {
    if (!line.trim()) continue;
    if (!/^\s/.test(line)) {
      const pid = Number(/pid=(\d+)/.exec(line)?.[1]);
      // The first address:port column is the local end (the State column comes first).
      const local = line
        .trim()
        .split(/\s+/)
        .find((field) => /:\d+$/.test(field));
      current = agentPids.has(pid) ? local : undefined;
      continue;
    }
    const received = /bytes_received:(\d+)/.exec(line);
    // What the agent sent: bytes_sent where the kernel reports it, else bytes_acked.
    const sent = /bytes_sent:(\d+)/.exec(line) ?? /bytes_acked:(\d+)/.exec(line);
    if (current)
      sockets.set(current, { in: received ? Number(received[1]) : 0, out: sent ? Number(sent[1]) : 0 });
  }
  return sockets;
}

function wireDelta(before, after) {
  let bytes = 0;
  let sent = 0;
  let closed = 0;
  for (const [socket, value] of after) {
    bytes += value.in - (before.get(socket)?.in ?? 0);
    sent += value.out - (before.get(socket)?.out ?? 0);
  }
  for (const socket of before.keys()) if (!after.has(socket)) closed++;
  return { bytes, sent, closed };
}

/** A process's resident set now and its peak since the last resetPeak, in MiB (/proc/PID/status). */
function memoryOf(pid) {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = (field) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? 0);
  return { rss: kb("VmRSS") / 1024, peak: kb("VmHWM") / 1024 };
}

/** Resets VmHWM to the current RSS (writing 5 to /proc/PID/clear_refs), so the next peak is this deploy's. */
function resetPeak(pid) {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, "5");
    return true;
  } catch {
    return false;
  }
}

function currentOf(root) {
  try {
    return readlinkSync(path.join(root, "bench", "current"));
  } catch {
    return null;
  }
}

/**
 * Phases of a deploy from the server's own record (read from its SQLite file
 * after the deploy): log chunks are stored at least every 250 ms, so each
 * boundary is known to within that.
 */
function phasesOf(dataDir, deployId) {
  const db = new Database(path.join(dataDir, "turnout.db"), { readonly: true, fileMustExist: true });
  try {
    const deploy = db
      .prepare("select created_at, started_at, finished_at from deploys where id = ?")
      .get(deployId);
    const chunks = db
      .prepare("select created_at, text from log_chunks where deploy_id = ? order by seq")
      .all(deployId);
    const at = (iso) => Date.parse(iso);
    const firstWith = (needle) => chunks.find((c) => c.text.includes(needle));
    const lastWith = (needle) => [...chunks].reverse().find((c) => c.text.includes(needle));
    const created = at(deploy.created_at);
    const started = at(deploy.started_at);
    const finished = at(deploy.finished_at);
    const staging = firstWith("==> staging release");
    const staged = lastWith("] staged (") ?? lastWith("already staged");
    const stageStart = staging ? at(staging.created_at) : started;
    const stageEnd = staged ? at(staged.created_at) : stageStart;
    return {
      recordedMs: finished - created,
      queueMs: started - created,
      prepareMs: stageStart - started,
      stageMs: stageEnd - stageStart,
      switchMs: finished - stageEnd,
      log: chunks.map((c) => c.text).join(""),
      timeline: chunks.map((c) => `+${at(c.created_at) - started} ms\n${c.text}`).join(""),
    };
  } finally {
    db.close();
  }
}

async function deployAndMeasure(server, ref, agents, artifactBytes) {
  const pids = new Set(agents.map((a) => a.child.pid));
  const before = agents.map((a) => currentOf(a.root));
  const wireBefore = agentSocketBytes(server.port, pids);
  const cpuBefore = processCpu(server.child.pid);
  const agentUser = () => agents.reduce((sum, a) => sum + processCpu(a.child.pid).user, 0);
  const agentCpuBefore = agents.reduce((sum, a) => sum + processCpu(a.child.pid).own, 0);
  const agentUserBefore = agentUser();
  const peakReset = agents.every((a) => resetPeak(a.child.pid));
  const started = performance.now();
  const { deploy } = await api(server, "POST", DEPLOYS, { ref });
  // Watch the hosts' `current` links rather than poll the server, so the
  // harness adds next to nothing to the server's CPU time; ask the server once
  // a second (and at the end) whether the deploy is over.
  let final;
  let lastAsked = performance.now();
  for (;;) {
    const allSwitched = agents.every((a, i) => {
      const now = currentOf(a.root);
      return now !== null && now !== before[i];
    });
    if (allSwitched || performance.now() - lastAsked > 1000) {
      lastAsked = performance.now();
      const answer = (await api(server, "GET", `/api/v1/deploys/${deploy.id}`)).deploy;
      if (["succeeded", "failed", "cancelled"].includes(answer.status)) {
        final = answer;
        break;
      }
    }
    await sleep(allSwitched ? 20 : 50);
  }
  const harnessMs = performance.now() - started;
  const cpuAfter = processCpu(server.child.pid);
  const agentCpu = agents.reduce((sum, a) => sum + processCpu(a.child.pid).own, 0) - agentCpuBefore;
  const agentUserMs = agentUser() - agentUserBefore;
  const wire = wireDelta(wireBefore, agentSocketBytes(server.port, pids));
  const peaks = agents.map((a) => memoryOf(a.child.pid).peak);
  const phases = phasesOf(server.dataDir, deploy.id);
  if (final.status !== "succeeded") {
    throw new Error(
      `deploy ${deploy.id} ${final.status}: ${final.errorMessage ?? ""}\n${phases.log.slice(-4000)}`,
    );
  }
  const { hosts } = await api(server, "GET", `/api/v1/deploys/${deploy.id}/hosts`);
  const notHealthy = hosts.filter((h) => h.step !== "healthy" || !h.switched);
  if (hosts.length !== agents.length || notHealthy.length > 0) {
    throw new Error(`deploy ${deploy.id}: hosts ${JSON.stringify(hosts.map((h) => [h.hostName, h.step]))}`);
  }
  const bytesPerHost = hosts.reduce((sum, h) => sum + h.bytesFetched, 0) / hosts.length;
  // The artifact's size as the server counted it (the files of the tree, without .git).
  const counted = /==> artifact \w+: (\d+) files, (\d+) bytes/.exec(phases.log);
  if (counted) artifactBytes = Number(counted[2]);
  return {
    artifactFiles: counted ? Number(counted[1]) : undefined,
    artifactBytes,
    id: deploy.id,
    ...phases,
    // POST sent to the deploy seen finished: the request's own git fetch
    // (for a new mirror, the clone) happens before the deploy is recorded.
    wallMs: harnessMs,
    requestMs: harnessMs - phases.recordedMs,
    bytesPerHost,
    bytesPct: (bytesPerHost / artifactBytes) * 100,
    wirePerHost: wire.bytes / agents.length,
    wireSentPerHost: wire.sent / agents.length,
    // Peak resident set of each agent during this deploy (VmHWM, reset before it).
    agentPeakMb: peakReset ? Math.max(...peaks) : Number.NaN,
    agentPeakMedianMb: peakReset ? median(peaks) : Number.NaN,
    wirePct: (wire.bytes / agents.length / artifactBytes) * 100,
    socketsClosed: wire.closed,
    cpuMs: cpuAfter.own - cpuBefore.own,
    cpuPerHostMs: (cpuAfter.own - cpuBefore.own) / agents.length,
    childCpuMs: cpuAfter.children - cpuBefore.children,
    agentCpuPerHostMs: agentCpu / agents.length,
    agentUserPerHostMs: agentUserMs / agents.length,
  };
}

/** `git archive <sha> | tar -x -C dir_i` into n directories, all n pipelines at once. */
async function baseline(repo, sha, n, dir) {
  const dirs = Array.from({ length: n }, (_, i) => path.join(dir, `copy-${i}`));
  for (const d of dirs) mkdirSync(d, { recursive: true });
  const started = performance.now();
  const cpuBefore = processCpu(process.pid).children;
  await Promise.all(
    dirs.map(
      (d) =>
        new Promise((resolve, reject) => {
          const child = track(
            spawn("sh", ["-c", 'git archive --format=tar "$1" | tar -x -C "$2"', "sh", sha, d], {
              cwd: repo,
              stdio: ["ignore", "ignore", "inherit"],
            }),
          );
          child.once("error", reject);
          child.once("exit", (code) =>
            code === 0 ? resolve() : reject(new Error(`baseline exited ${code}`)),
          );
        }),
    ),
  );
  // Kept until the run ends: see SETTLE_MS.
  return { ms: performance.now() - started, cpuMs: processCpu(process.pid).children - cpuBefore };
}

const fmt = (v, digits = 1) => v.toFixed(digits).padStart(9);
const int = (v) => Math.round(v).toLocaleString("en-US");

/**
 * Nothing is deleted while the run measures (bench/run.js removes the work
 * directory at the end). This machine's ext4 has no journal, and there the
 * kernel will not reuse an inode freed less than 60 s ago (6 minutes while
 * its inode table block is still dirty): a new file, directory or symlink is
 * placed only after skipping every such inode of its block group, each skip
 * a buffer-cache lookup (`recently_deleted()` in fs/ext4/ialloc.c). Right
 * after thousands of deletions nearby (a test run, an earlier bench) creating
 * an inode costs 0.2–0.5 ms instead of ~20 µs, link and rename do not change,
 * and every figure here that creates files moves with it. So the run starts
 * with a flush (inode tables written back: the 60 s rule) and waits that
 * long, and each fleet size prints an inode probe (`mkdir` cost in its own
 * directory, just before its baseline) so a reader can see the conditions.
 */
const SETTLE_MS = Number(process.env.TURNOUT_BENCH_SETTLE_MS ?? 65_000);

/** Microseconds per mkdir of 400 empty directories under `dir` (kept: nothing is deleted while measuring). */
function inodeProbe(dir) {
  const probe = path.join(dir, "inode-probe");
  mkdirSync(probe, { recursive: true });
  const started = performance.now();
  for (let i = 0; i < 400; i++) mkdirSync(path.join(probe, String(i)));
  return ((performance.now() - started) * 1000) / 400;
}

export async function runFleet(work) {
  console.log(`fleet: waiting ${SETTLE_MS / 1000} s for earlier deletions to settle (see SETTLE_MS)`);
  execFileSync("sync");
  await sleep(SETTLE_MS);
  const repo = path.join(work, "app");
  const generatedAt = performance.now();
  const app = generateApp(repo);
  console.log(
    `fleet: generated app ${int(app.files)} files, ${(app.bytes / 1048576).toFixed(1)} MiB (random content) in ${((performance.now() - generatedAt) / 1000).toFixed(1)} s; fleet sizes ${SIZES.join(", ")}`,
  );
  const rows = [];
  for (const n of SIZES) {
    const dir = path.join(work, `n${n}`);
    // Dirty pages of the previous step (the generated repository, the last
    // fleet's files) are written back first, so no figure pays for another's.
    execFileSync("sync");
    const probeUs = inodeProbe(dir);
    const cpuStart = cpuTimes();
    const { ms: baselineMs, cpuMs: baselineCpuMs } = await baseline(
      repo,
      app.base,
      n,
      path.join(dir, "baseline"),
    );
    const server = await startServer(path.join(dir, "server"), manifest(repo));
    let agents = [];
    try {
      const { token } = await api(server, "POST", "/api/v1/tokens", {
        name: "bench",
        role: "agent",
        apps: ["bench"],
        labels: ["role=web"],
      });
      agents = Array.from({ length: n }, (_, i) =>
        startAgent(
          server.url,
          token,
          `web-${String(i + 1).padStart(2, "0")}`,
          path.join(dir, "hosts", `web-${i + 1}`),
        ),
      );
      await waitForHosts(server, agents, 120_000);
      // Idle: connected, enrolled, a few heartbeats in, nothing asked of them yet.
      await sleep(5000);
      const idle = agents.map((a) => memoryOf(a.child.pid).rss);
      // The mirror's first clone is a one-time cost of adding an app, not of a
      // release (a running server has it from its poller): done here, apart.
      const cloneStarted = performance.now();
      await api(server, "GET", "/api/v1/apps/bench/environments/production/pending");
      const cloneMs = performance.now() - cloneStarted;
      execFileSync("sync");
      const full = await deployAndMeasure(server, app.base, agents, app.bytes);
      const one = await deployAndMeasure(server, app.oneFile, agents, app.bytes);
      const steal = stealPercent(cpuStart, cpuTimes());
      // Idle again after both deploys (what a host pays between deploys).
      await sleep(5000);
      const idleAfter = agents.map((a) => memoryOf(a.child.pid).rss);
      const memory = {
        idleMb: median(idle),
        idleMaxMb: Math.max(...idle),
        idleAfterMb: median(idleAfter),
        idleAfterMaxMb: Math.max(...idleAfter),
      };
      const row = { n, baselineMs, baselineCpuMs, cloneMs, probeUs, full, one, steal, memory };
      rows.push(row);
      printRow(row);
      // TURNOUT_BENCH_TIMELINE=1 prints both deploys' logs with times (where the time goes).
      if (process.env.TURNOUT_BENCH_TIMELINE) console.log(`${full.timeline}\n${one.timeline}`);
    } finally {
      await stopAgents(agents);
      await server.stop();
    }
  }
  printSummary(rows);
  return rows;
}

function printRow({ n, baselineMs, baselineCpuMs, cloneMs, probeUs, full, one, steal, memory }) {
  const tag = `fleet N=${String(n).padEnd(2)}`;
  const mb = (v) => `${v.toFixed(1)} MiB`;
  console.log(
    `${tag} agent (${AGENT_KIND}) RSS: idle ${mb(memory.idleMb)} (max ${mb(memory.idleMaxMb)}) budget < 50 MB; ` +
      `peak staging the full release ${mb(full.agentPeakMedianMb)} (max ${mb(full.agentPeakMb)}) budget < 100 MB; ` +
      `peak one-file ${mb(one.agentPeakMedianMb)} (max ${mb(one.agentPeakMb)}); idle after the deploys ${mb(memory.idleAfterMb)} (max ${mb(memory.idleAfterMaxMb)})`,
  );
  console.log(
    `${tag} wire per host, both directions (agent sockets to the server, kernel counters): ` +
      `full ${int(full.wirePerHost)} B in + ${int(full.wireSentPerHost)} B out; ` +
      `one-file ${int(one.wirePerHost)} B in + ${int(one.wireSentPerHost)} B out = ${int(one.wirePerHost + one.wireSentPerHost)} B  budget < 20 KB`,
  );
  console.log(
    `${tag} inode probe: ${probeUs.toFixed(0)} µs per mkdir here (about 20 when no recent deletions nearby; see SETTLE_MS)`,
  );
  console.log(
    `${tag} mirror's first clone (before the releases, not counted in them) ${cloneMs.toFixed(0)} ms`,
  );
  const ratio = full.wallMs / baselineMs;
  const speedup = full.wallMs / one.wallMs;
  console.log(
    `${tag} full release                ${fmt(full.wallMs)} ms   baseline git archive|tar x${n} ${fmt(baselineMs)} ms   ratio ${ratio.toFixed(2)}  budget < 1.3 at N=20`,
  );
  console.log(
    `${tag} one-file release            ${fmt(one.wallMs)} ms   speedup ${speedup.toFixed(1)}x  budget >= 10x`,
  );
  console.log(
    `${tag} one-file bytes per host     ${fmt(one.bytesPerHost, 0)} B    ${one.bytesPct.toFixed(3)}% of the artifact  budget < 1%   (on the wire ${int(one.wirePerHost)} B, ${one.wirePct.toFixed(2)}%)`,
  );
  console.log(
    `${tag} one-file server CPU per host ${fmt(one.cpuPerHostMs)} ms   (whole deploy ${one.cpuMs.toFixed(0)} ms, git children ${one.childCpuMs.toFixed(0)} ms)  budget < 20 ms, flat in N`,
  );
  console.log(
    `${tag} full: ${int(full.bytesPerHost)} B per host (wire ${int(full.wirePerHost)} B), server CPU ${full.cpuMs.toFixed(0)} ms = ${full.cpuPerHostMs.toFixed(1)} ms per host, git children ${full.childCpuMs.toFixed(0)} ms; agent CPU per host: full ${full.agentCpuPerHostMs.toFixed(0)} ms (user ${full.agentUserPerHostMs.toFixed(0)}), one-file ${one.agentCpuPerHostMs.toFixed(0)} ms (user ${one.agentUserPerHostMs.toFixed(0)}); baseline CPU per copy ${(baselineCpuMs / n).toFixed(0)} ms`,
  );
  for (const [label, d] of [
    ["full", full],
    ["one-file", one],
  ]) {
    console.log(
      `${tag} ${label} phases: request (git fetch, resolve) + polling ${d.requestMs.toFixed(0)} ms, queued ${d.queueMs} ms, workspace+artifact ${d.prepareMs} ms, stage ${d.stageMs} ms, switch+finish ${d.switchMs} ms (deploy record: ${d.recordedMs} ms${d.socketsClosed ? `; ${d.socketsClosed} agent sockets closed mid-deploy, wire bytes are a lower bound` : ""})`,
    );
  }
  console.log(`${tag} CPU steal ${steal.toFixed(1)}%`);
}

function printSummary(rows) {
  console.log("");
  console.log(
    "   N | full ms | baseline ms | ratio | one-file ms | speedup | one-file B/host (%) | wire B/host | server CPU ms/host one-file (deploy) | full (deploy)",
  );
  for (const { n, baselineMs, full, one } of rows) {
    console.log(
      [
        String(n).padStart(4),
        full.wallMs.toFixed(0).padStart(7),
        baselineMs.toFixed(0).padStart(11),
        (full.wallMs / baselineMs).toFixed(2).padStart(5),
        one.wallMs.toFixed(0).padStart(11),
        `${(full.wallMs / one.wallMs).toFixed(1)}x`.padStart(7),
        `${int(one.bytesPerHost)} (${one.bytesPct.toFixed(3)}%)`.padStart(19),
        int(one.wirePerHost).padStart(11),
        `${one.cpuPerHostMs.toFixed(1)} (${one.cpuMs.toFixed(0)})`.padStart(36),
        ` ${full.cpuPerHostMs.toFixed(1)} (${full.cpuMs.toFixed(0)})`,
      ].join(" |"),
    );
  }
  // The server's work split into a fixed part per deploy and a part per host:
  // least squares of CPU = fixed + perHost * N over the fleet sizes.
  if (rows.length >= 2) {
    for (const [label, pick] of [
      ["one-file", (r) => r.one.cpuMs],
      ["full", (r) => r.full.cpuMs],
    ]) {
      const xs = rows.map((r) => r.n);
      const ys = rows.map(pick);
      const mx = xs.reduce((a, b) => a + b, 0) / xs.length;
      const my = ys.reduce((a, b) => a + b, 0) / ys.length;
      const slope =
        xs.reduce((s, x, i) => s + (x - mx) * (ys[i] - my), 0) / xs.reduce((s, x) => s + (x - mx) ** 2, 0);
      console.log(
        `fleet server CPU, ${label} release: ${(my - slope * mx).toFixed(0)} ms per deploy + ${slope.toFixed(1)} ms per host (least squares over N = ${xs.join(", ")})`,
      );
    }
  }
}
