#!/usr/bin/env node
// `npm run bench:peers`: Turnout against the tools people use instead
// (docs/benchmarks.md, "Turnout against its peers"). The same generated app
// (bench/peers/app.js), served by a real `git daemon` on loopback, is deployed
// to the same N hosts (bench/peers/hosts.js: one sshd per host in a mount
// namespace of its own) by `git archive | ssh tar` ×N (the floor), Ansible,
// shipit-cli, Capistrano (bench/peers/tools.js) and Turnout over agents and
// over SSH (bench/peers/turnout.js): a full release, then a one-file change.
// Repetitions are interleaved, the order of the tools rotated each time; every
// deploy is checked on every host by reading its `current` over ssh. Needs
// root (namespaces, bind mounts); not part of CI or of the test suite.
//
//   node bench/peers.js [--hosts 5,20] [--reps 3] [--tools archive,ansible,...] [--out results.json]
//   node bench/peers.js --install      installs the peers (apt-get, and npm into a private directory)
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { cpuTimes, killAll, median, ROOT, stealPercent } from "./lib.js";
import { FILES, generateApp, markerText, startGitDaemon } from "./peers/app.js";
import { makeKeys, readCurrent, startHosts, stopHosts, wireBytes } from "./peers/hosts.js";
import { PEERS, SHIPIT_DIR } from "./peers/tools.js";
import { turnoutTool } from "./peers/turnout.js";

const ALL_TOOLS = ["archive", "ansible", "shipit", "capistrano", "turnout-agents", "turnout-ssh"];

function parseArgs(argv) {
  const opts = { hosts: [5, 20], reps: 3, tools: ALL_TOOLS, install: false, out: undefined };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      const v = argv[++i];
      if (v === undefined) usage(`${a} needs a value`);
      return v;
    };
    if (a === "--install") opts.install = true;
    else if (a === "--hosts") opts.hosts = value().split(",").map(Number);
    else if (a === "--reps") opts.reps = Number(value());
    else if (a === "--tools") opts.tools = value().split(",");
    else if (a === "--out") opts.out = value();
    else usage(`unknown argument ${JSON.stringify(a)}`);
  }
  if (opts.hosts.some((n) => !Number.isInteger(n) || n < 1 || n > 200))
    usage("--hosts: whole numbers from 1 to 200");
  if (!Number.isInteger(opts.reps) || opts.reps < 1) usage("--reps: a whole number from 1");
  const unknown = opts.tools.filter((t) => !ALL_TOOLS.includes(t));
  if (unknown.length) usage(`unknown tool(s) ${unknown.join(", ")}; known: ${ALL_TOOLS.join(", ")}`);
  return opts;
}

function usage(problem) {
  console.error(`bench:peers: ${problem}
usage: node bench/peers.js [--hosts 5,20] [--reps 3] [--tools ${ALL_TOOLS.join(",")}] [--out file.json]
       node bench/peers.js --install`);
  process.exit(2);
}

const onPath = (cmd) =>
  spawnSync("sh", ["-c", 'command -v "$1"', "sh", cmd], { stdio: "ignore" }).status === 0;
const shipitInstalled = () =>
  existsSync(path.join(SHIPIT_DIR, "node_modules", "shipit-deploy", "package.json"));

function install() {
  const apt = (args) =>
    execFileSync("apt-get", args, {
      stdio: "inherit",
      env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" },
    });
  apt(["update"]);
  apt(["install", "-y", "ansible", "capistrano", "rsync", "openssh-server", "openssh-client", "git"]);
  mkdirSync(SHIPIT_DIR, { recursive: true });
  if (!existsSync(path.join(SHIPIT_DIR, "package.json")))
    writeFileSync(path.join(SHIPIT_DIR, "package.json"), '{"private":true}\n');
  execFileSync("npm", ["install", "--no-audit", "--no-fund", "shipit-cli@5", "shipit-deploy@5"], {
    cwd: SHIPIT_DIR,
    stdio: "inherit",
  });
}

function missing(tools) {
  const out = [];
  if (process.getuid?.() !== 0) out.push("root (mount namespaces and bind mounts)");
  for (const [cmd, pkg] of [
    ["unshare", "util-linux"],
    ["/usr/sbin/sshd", "openssh-server"],
    ["ssh", "openssh-client"],
    ["git", "git"],
  ]) {
    if (!onPath(cmd)) out.push(`${cmd} (apt-get install -y ${pkg})`);
  }
  if (tools.includes("ansible") && !onPath("ansible-playbook"))
    out.push("ansible (apt-get install -y ansible)");
  if (tools.includes("capistrano") && !onPath("cap")) out.push("capistrano (apt-get install -y capistrano)");
  if (tools.includes("shipit") && !onPath("rsync")) out.push("rsync (apt-get install -y rsync)");
  if (tools.includes("shipit") && !shipitInstalled())
    out.push(`shipit-cli and shipit-deploy in ${SHIPIT_DIR}`);
  return out;
}

function versions() {
  const dpkg = (pkg) => {
    const r = spawnSync("dpkg-query", ["-W", "-f", "$" + "{Version}", pkg], { encoding: "utf8" });
    return r.status === 0 ? r.stdout.trim() : "not installed";
  };
  const first = (argv) => {
    const r = spawnSync(argv[0], argv.slice(1), { encoding: "utf8" });
    return r.status === 0 ? (r.stdout || r.stderr).split("\n")[0].trim() : "?";
  };
  const pkgVersion = (name) => {
    try {
      return JSON.parse(readFileSync(path.join(SHIPIT_DIR, "node_modules", name, "package.json"), "utf8"))
        .version;
    } catch {
      return "not installed";
    }
  };
  let turnout = "?";
  try {
    turnout = execFileSync("git", ["-C", ROOT, "log", "-1", "--format=%h %s"], { encoding: "utf8" })
      .trim()
      .slice(0, 90);
  } catch {}
  return {
    node: process.version,
    turnout,
    ansible: `${dpkg("ansible")} (${first(["ansible", "--version"])})`,
    capistrano: dpkg("capistrano"),
    ruby: first(["ruby", "--version"]),
    "shipit-cli": pkgVersion("shipit-cli"),
    "shipit-deploy": pkgVersion("shipit-deploy"),
    rsync: dpkg("rsync"),
    openssh: dpkg("openssh-server"),
    git: first(["git", "--version"]),
  };
}

/** CPU of the bench's own process tree (every tool, sshd, server and agent it started), in ms, from a cpuacct cgroup when the machine lets us make one. */
function benchCgroup() {
  const dir = `/sys/fs/cgroup/cpuacct/turnout-bench-peers-${process.pid}`;
  try {
    mkdirSync(dir);
    writeFileSync(path.join(dir, "cgroup.procs"), String(process.pid));
  } catch {
    return { read: () => Number.NaN, close() {} };
  }
  return {
    read: () => Number(readFileSync(path.join(dir, "cpuacct.usage"), "utf8")) / 1e6,
    close() {
      try {
        writeFileSync("/sys/fs/cgroup/cpuacct/cgroup.procs", String(process.pid));
        execFileSync("rmdir", [dir], { stdio: "ignore" });
      } catch {}
    },
  };
}

/** Non-idle CPU of the whole machine (all processes, others' too), in ms, from /proc/stat. */
const CLK_TCK = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
function machineBusyMs() {
  const f = readFileSync("/proc/stat", "utf8").split("\n")[0].trim().split(/\s+/).slice(1).map(Number);
  const total = f.reduce((a, b) => a + b, 0);
  return ((total - f[3] - (f[4] ?? 0)) * 1000) / CLK_TCK;
}

async function verify(ctx, tool, dir, release) {
  const want = markerText(release).split("\n")[0];
  const where = tool.currentDir ? tool.currentDir(dir) : dir;
  const got = await Promise.all(
    ctx.hosts.map((h) => readCurrent(ctx.keys, h, where).catch((e) => `error: ${e.message}`)),
  );
  const wrong = got.map((g, i) => [ctx.hosts[i].name, g]).filter(([, g]) => g !== want);
  if (wrong.length)
    throw new Error(
      `${tool.name} ${release}: current is wrong on ${wrong.length} host(s): ${JSON.stringify(wrong.slice(0, 3))}`,
    );
}

async function measure(ctx, tool, dir, release, cg) {
  const wireBefore = wireBytes(ctx.hosts) + (tool.agentWire?.() ?? 0);
  const busyBefore = machineBusyMs();
  const cgBefore = cg.read();
  const started = performance.now();
  await tool.deploy(ctx, dir, release);
  const wallMs = performance.now() - started;
  const cpuMs = machineBusyMs() - busyBefore;
  const benchCpuMs = cg.read() - cgBefore;
  const bytes = wireBytes(ctx.hosts) + (tool.agentWire?.() ?? 0) - wireBefore;
  await verify(ctx, tool, dir, release);
  return { wallMs, cpuMs, benchCpuMs, bytesPerHost: bytes / ctx.hosts.length };
}

const s = (ms) => (Number.isFinite(ms) ? (ms / 1000).toFixed(1) : "—");
const kb = (b) => (Number.isFinite(b) ? `${Math.round(b / 1024).toLocaleString("en-US")} KB` : "—");

function summarize(results, tools, sizes) {
  const rows = [];
  for (const n of sizes) {
    for (const name of tools) {
      const runs = results.filter((r) => r.n === n && r.tool === name);
      const pick = (release, field) =>
        median(runs.filter((r) => r[release] && !r.error).map((r) => r[release][field]));
      const ok = runs.filter((r) => !r.error);
      rows.push({
        n,
        tool: name,
        reps: ok.length,
        failed: runs.length - ok.length,
        full: {
          wallMs: pick("full", "wallMs"),
          cpuMs: pick("full", "cpuMs"),
          benchCpuMs: pick("full", "benchCpuMs"),
          bytesPerHost: pick("full", "bytesPerHost"),
        },
        one: {
          wallMs: pick("one", "wallMs"),
          cpuMs: pick("one", "cpuMs"),
          benchCpuMs: pick("one", "benchCpuMs"),
          bytesPerHost: pick("one", "bytesPerHost"),
        },
        agentIdleRssMb: median(ok.flatMap((r) => r.agentIdleRssKb ?? [])) / 1024,
        agentPeakRssMb: median(ok.flatMap((r) => r.agentPeakRssKb ?? [])) / 1024,
        cloneMs: median(ok.map((r) => r.cloneMs).filter((v) => v !== undefined)),
      });
    }
  }
  return rows;
}

function printSummary(rows, sizes) {
  console.log(
    "\nmedian wall seconds full / one-file; machine CPU-s full / one-file (bench's own tree); bytes per host full / one-file (both directions)",
  );
  for (const r of rows) {
    console.log(
      `N=${String(r.n).padEnd(3)} ${r.tool.padEnd(15)} ${s(r.full.wallMs).padStart(6)} / ${s(r.one.wallMs).padEnd(6)}  cpu ${s(r.full.cpuMs)} (${s(r.full.benchCpuMs)}) / ${s(r.one.cpuMs)} (${s(r.one.benchCpuMs)})  bytes ${kb(r.full.bytesPerHost)} / ${kb(r.one.bytesPerHost)}  reps ${r.reps}${r.failed ? ` FAILED ${r.failed}` : ""}${r.tool === "turnout-agents" ? `  agent RSS idle ${r.agentIdleRssMb.toFixed(0)} MB, peak ${r.agentPeakRssMb.toFixed(0)} MB` : ""}${r.cloneMs ? `  (mirror clone before: ${s(r.cloneMs)} s)` : ""}`,
    );
  }
  for (const n of sizes) {
    const at = (tool) => rows.find((r) => r.n === n && r.tool === tool);
    const peers = ["ansible", "shipit", "capistrano"]
      .map(at)
      .filter((r) => r && Number.isFinite(r.full.wallMs));
    if (!peers.length) continue;
    const bestFull = Math.min(...peers.map((r) => r.full.wallMs));
    const bestOne = Math.min(...peers.map((r) => r.one.wallMs));
    for (const mode of ["turnout-agents", "turnout-ssh"]) {
      const t = at(mode);
      if (!t || !Number.isFinite(t.full.wallMs)) continue;
      const oneX = bestOne / t.one.wallMs;
      const fullX = bestFull / t.full.wallMs;
      console.log(
        `N=${n} ${mode}: one-file ${oneX.toFixed(1)}× faster than the fastest peer (budget ≥ 10× at N=20: ${oneX >= 10 ? "meets" : "misses"}); full ${fullX.toFixed(1)}× (budget ≥ 2×: ${fullX >= 2 ? "meets" : "misses"})`,
      );
    }
    const a = at("turnout-agents");
    const floor = at("archive");
    if (a && floor && Number.isFinite(floor.full.wallMs)) {
      const r = a.full.wallMs / floor.full.wallMs;
      console.log(
        `N=${n} turnout-agents full / git archive|tar ×N: ${r.toFixed(2)} (budget ≤ 1.5: ${r <= 1.5 ? "meets" : "misses"})`,
      );
    }
  }
}

const opts = parseArgs(process.argv.slice(2));
if (opts.install) {
  install();
  process.exit(0);
}
const lacking = missing(opts.tools);
if (lacking.length) {
  console.error(
    `bench:peers: missing ${lacking.join("; ")}.\nInstall the peers with: npm run bench:peers -- --install`,
  );
  process.exit(2);
}

const work = mkdtempSync(path.join(tmpdir(), "turnout-peers-"));
const cg = benchCgroup();
let hosts = [];
let daemon;
const cleanup = () => {
  killAll();
  cg.close();
  rmSync(work, { recursive: true, force: true });
};
for (const signal of ["SIGINT", "SIGTERM"]) {
  process.once(signal, () => {
    cleanup();
    process.exit(130);
  });
}
try {
  const info = versions();
  console.log(
    `bench:peers: ${cpus().length} cores (${cpus()[0]?.model ?? "?"}), load average ${readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ")}`,
  );
  for (const [k, v] of Object.entries(info)) console.log(`  ${k.padEnd(14)} ${v}`);
  const genStarted = performance.now();
  const app = generateApp(work);
  console.log(
    `app: ${app.files.toLocaleString("en-US")} files (want ${FILES}), ${(app.bytes / 1e6).toFixed(1)} MB, generated in ${s(performance.now() - genStarted)} s`,
  );
  daemon = await startGitDaemon(app);
  const maxN = Math.max(...opts.hosts);
  const keys = makeKeys(work, maxN);
  hosts = await startHosts(work, maxN, keys, daemon.port);
  console.log(`hosts: ${maxN} sshd in their own mount namespaces, git daemon at ${daemon.url}`);
  const tools = Object.fromEntries(
    opts.tools.map((name) => [name, name.startsWith("turnout-") ? turnoutTool(name.slice(8)) : PEERS[name]]),
  );
  const home = path.join(work, "home");
  mkdirSync(home, { recursive: true });
  for (const tool of Object.values(tools)) await tool.prepare({ work, keys });
  const results = [];
  const cpuStart = cpuTimes();
  for (const n of opts.hosts) {
    const ctx = { work, keys, home, app, gitUrl: daemon.url, hosts: hosts.slice(0, n) };
    for (let rep = 0; rep < opts.reps; rep++) {
      const shift = rep % opts.tools.length;
      const order = [...opts.tools.slice(shift), ...opts.tools.slice(0, shift)];
      for (const name of order) {
        const tool = tools[name];
        const dir = `n${n}r${rep + 1}/${name}`;
        const row = {
          n,
          rep: rep + 1,
          tool: name,
          load: readFileSync("/proc/loadavg", "utf8").split(" ")[0],
        };
        try {
          Object.assign(row, (await tool.start?.(ctx, dir)) ?? {});
          row.full = await measure(ctx, tool, dir, "base", cg);
          row.one = await measure(ctx, tool, dir, "onefile", cg);
          if (tool.agentPeakRssKb) row.agentPeakRssKb = tool.agentPeakRssKb();
        } catch (e) {
          row.error = e.message.slice(0, 4000);
        } finally {
          await tool.stop?.();
        }
        results.push(row);
        // Written after every tool, so an interrupted run keeps what it measured.
        if (opts.out) writeFileSync(opts.out, `${JSON.stringify({ versions: info, results }, null, 2)}\n`);
        console.log(
          row.error
            ? `N=${n} rep ${rep + 1} ${name}: FAILED ${row.error}`
            : `N=${n} rep ${rep + 1} ${name.padEnd(15)} full ${s(row.full.wallMs)} s, one-file ${s(row.one.wallMs)} s; machine CPU ${s(row.full.cpuMs)} / ${s(row.one.cpuMs)} s (bench ${s(row.full.benchCpuMs)} / ${s(row.one.benchCpuMs)}); per host ${kb(row.full.bytesPerHost)} / ${kb(row.one.bytesPerHost)} (load ${row.load})`,
        );
      }
    }
  }
  const rows = summarize(results, opts.tools, opts.hosts);
  printSummary(rows, opts.hosts);
  console.log(
    `CPU steal during the run: ${stealPercent(cpuStart, cpuTimes()).toFixed(1)}%; load average at the end ${readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ")}`,
  );
  if (opts.out)
    writeFileSync(
      opts.out,
      `${JSON.stringify({ versions: info, app: { files: app.files, bytes: app.bytes }, rows, results }, null, 2)}\n`,
    );
} finally {
  await stopHosts(hosts).catch(() => {});
  cleanup();
}
