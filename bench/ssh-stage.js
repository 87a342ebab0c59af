// SSH staging (docs/benchmarks.md, "SSH staging"): the host side of staging a
// 3,001-file, 50 MB release on N real sshd instances of this machine (one per
// host, each with its own root), then a release with one changed file. It
// drives SshHostOps directly (no server, no git) so that what it measures is
// the staging protocol itself: wall time, CPU of the host side (every
// process the sshd instances ran, read from their reaped children's times
// once the connections are closed), the bytes of data (stdin of the remote
// operations) and, with --wire, the bytes on the wire (TCP, both ways,
// through a counting proxy in front of each sshd: ssh's own framing, and the
// remote script that every session's command line carries; the proxy runs in
// this process, so server CPU then counts it too).
//
//   node bench/ssh-stage.js [--hosts 5] [--rounds 3] [--dist DIR[,DIR…]] [--wire] [--no-bases]
//
// Several --dist directories (builds of different commits) are run in turn,
// round after round (A, B, A, B…), and reported side by side.
import { execFileSync, spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { Readable } from "node:stream";
import { pathToFileURL } from "node:url";
import { freePort, median, ROOT, sleep } from "./lib.js";

const args = process.argv.slice(2);
const opt = (name, fallback) => {
  const i = args.indexOf(`--${name}`);
  return i === -1 ? fallback : args[i + 1];
};
const HOSTS = Number(opt("hosts", "5"));
const ROUNDS = Number(opt("rounds", "3"));
const DISTS = opt("dist", path.join(ROOT, "dist")).split(",");
const WIRE = args.includes("--wire");
// --no-bases: the server has no manifests to diff from, so every release goes whole (the reference
// for what a full staging of the one-file release costs the host).
const BASES = !args.includes("--no-bases");
const CLK_TCK = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
const FILES = 3000;
const BYTES = 50 * 1024 * 1024;

/** The shape of bench/fleet.js's app: log-uniform small files and 24 large ones. */
function generate() {
  let seed = 0x7e57;
  const random = () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const large = 24;
  const sizes = Array.from({ length: FILES - large }, () =>
    Math.round(100 * Math.exp(random() * Math.log(655.36))),
  );
  const rest = BYTES - sizes.reduce((a, b) => a + b, 0);
  const weights = Array.from({ length: large }, () => 0.5 + random());
  const weightSum = weights.reduce((a, b) => a + b, 0);
  for (const w of weights) sizes.push(Math.round((rest * w) / weightSum));
  return sizes.map((size, i) => {
    const parts = [`pkg${i % 9}`, `mod${i % 7}`, `part${i % 5}`].slice(0, i % 4);
    return {
      path: [...parts, `f${i}.${i >= FILES - large ? "bin" : "dat"}`].join("/"),
      content: randomBytes(size),
    };
  });
}

async function release(dist, files) {
  const { TreeBuilder } = await import(pathToFileURL(path.join(dist, "artifacts/tree-builder.js")).href);
  const { hostReleaseId, manifestDigest } = await import(
    pathToFileURL(path.join(dist, "domain/artifact.js")).href
  );
  const builder = new TreeBuilder();
  const blobs = new Map();
  for (const file of files) {
    const sha256 = createHash("sha256").update(file.content).digest("hex");
    blobs.set(sha256, file.content);
    builder.add({ path: file.path, type: "file", mode: 0o644, size: file.content.length, sha256 });
  }
  const manifest = builder.finish();
  const digest = manifestDigest(manifest);
  return {
    id: hostReleaseId(digest),
    digest,
    manifest,
    source: { open: async (sha) => Readable.from([blobs.get(sha)]) },
  };
}

async function startSshd() {
  const dir = mkdtempSync(path.join(os.tmpdir(), "turnout-bench-sshd-"));
  const key = (name) => {
    execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", path.join(dir, name)]);
    return path.join(dir, name);
  };
  const hostKey = key("host_key");
  const clientKey = key("client_key");
  writeFileSync(path.join(dir, "authorized_keys"), readFileSync(`${clientKey}.pub`), { mode: 0o600 });
  const home = path.join(dir, "home");
  const root = path.join(dir, "root");
  mkdirSync(home);
  mkdirSync(root);
  mkdirSync("/run/sshd", { recursive: true });
  const port = await freePort();
  writeFileSync(
    path.join(dir, "sshd_config"),
    [
      `Port ${port}`,
      "ListenAddress 127.0.0.1",
      `HostKey ${hostKey}`,
      `AuthorizedKeysFile ${path.join(dir, "authorized_keys")}`,
      "PasswordAuthentication no",
      "KbdInteractiveAuthentication no",
      "UsePAM no",
      "PermitRootLogin prohibit-password",
      "StrictModes no",
      `PidFile ${path.join(dir, "sshd.pid")}`,
      "MaxSessions 64",
      "MaxStartups 64",
      `SetEnv "HOME=${home}"`,
      "PermitUserRC no",
      "LogLevel INFO",
      "",
    ].join("\n"),
  );
  const hostPub = readFileSync(`${hostKey}.pub`, "utf8").trim().split(" ").slice(0, 2).join(" ");
  // ssh talks to sshd through the counting proxy: the key is pinned for its port.
  const wire = WIRE ? await countingProxy(port) : { port, bytes: 0, close: () => undefined };
  writeFileSync(path.join(dir, "known_hosts"), `[127.0.0.1]:${wire.port} ${hostPub}\n`);
  const child = spawn("/usr/sbin/sshd", ["-D", "-e", "-f", path.join(dir, "sshd_config")], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  let output = "";
  child.stderr.setEncoding("utf8").on("data", (t) => {
    output += t;
  });
  while (!output.includes(`Server listening on 127.0.0.1 port ${port}`)) {
    if (child.exitCode !== null) throw new Error(output);
    await sleep(20);
  }
  return {
    root,
    config: (name) => ({
      name,
      address: "127.0.0.1",
      port: wire.port,
      user: os.userInfo().username,
      keyFile: clientKey,
      knownHostsFile: path.join(dir, "known_hosts"),
      root,
      labels: {},
    }),
    /** CPU seconds of every process this sshd forked and reaped. */
    childCpu() {
      const stat = readFileSync(`/proc/${child.pid}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      return (Number(fields[13]) + Number(fields[14])) / CLK_TCK;
    },
    /** Bytes through the proxy so far, both ways. */
    wireBytes: () => wire.bytes,
    async stop() {
      wire.close();
      child.kill("SIGTERM");
      await new Promise((r) => child.once("close", r));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A TCP proxy on a free loopback port in front of `port`, counting the bytes both ways. */
async function countingProxy(port) {
  const counter = { bytes: 0 };
  const server = net.createServer((client) => {
    const upstream = net.connect(port, "127.0.0.1");
    client.on("data", (d) => {
      counter.bytes += d.length;
      upstream.write(d);
    });
    upstream.on("data", (d) => {
      counter.bytes += d.length;
      client.write(d);
    });
    client.on("close", () => upstream.destroy());
    upstream.on("close", () => client.destroy());
    client.on("error", () => undefined);
    upstream.on("error", () => undefined);
  });
  const listen = await freePort();
  await new Promise((resolve) => server.listen(listen, "127.0.0.1", resolve));
  return {
    port: listen,
    get bytes() {
      return counter.bytes;
    },
    close: () => server.close(),
  };
}

/** Counts the bytes written to the ssh processes' stdin (what goes on the wire, before ssh's own framing). */
function countStdin(SshConnection) {
  let bytes = 0;
  const exec = SshConnection.prototype.exec;
  SshConnection.prototype.exec = function (op, opArgs, options = {}) {
    const input = options.input;
    let counted = input;
    if (typeof input === "string" || Buffer.isBuffer(input)) bytes += Buffer.byteLength(input);
    else if (typeof input === "function")
      counted = (stdin) => {
        const write = stdin.write.bind(stdin);
        stdin.write = (chunk, ...rest) => {
          bytes += chunk.length;
          return write(chunk, ...rest);
        };
        return input(stdin);
      };
    // SSH_STAGE_OPS=1: each session's wall time on stderr, to see where a staging spends it
    // (once: each round wraps exec again).
    if (!process.env.SSH_STAGE_OPS || options.timed)
      return exec.call(this, op, opArgs, { ...options, input: counted });
    const t0 = performance.now();
    return exec.call(this, op, opArgs, { ...options, input: counted, timed: true }).finally(() => {
      console.error(`  ${op}: ${(performance.now() - t0).toFixed(0)} ms`);
    });
  };
  return () => bytes;
}

async function round(dist, files, changed) {
  const { SshHostOps } = await import(
    pathToFileURL(path.join(dist, "providers/fleet/ssh/ssh-host-ops.js")).href
  );
  const { SshConnection } = await import(
    pathToFileURL(path.join(dist, "providers/fleet/ssh/ssh-connection.js")).href
  );
  const sent = countStdin(SshConnection);
  const full = await release(dist, files);
  const oneFile = await release(dist, changed);
  // The server's artifact store: bases of the listing differences (builds that have them).
  const stored = new Map(
    [full, oneFile].map((rel) => [rel.digest, { app: "bench", manifest: rel.manifest }]),
  );
  const manifests = async (digest) => stored.get(digest);
  // Which hosts hold the remote script, shared by the round's connections as a server shares it
  // across deploys (builds before the kept script ignore it).
  const keptScripts = new Set();
  const hosts = [];
  for (let i = 0; i < HOSTS; i++) hosts.push(await startSshd());
  const signal = new AbortController().signal;
  const out = {};
  try {
    for (const [label, rel] of [
      ["full", full],
      ["one-file", oneFile],
    ]) {
      const cpu0 = hosts.map((h) => h.childCpu());
      const server0 = process.cpuUsage();
      const bytes0 = sent();
      const wire0 = hosts.map((h) => h.wireBytes());
      const ops = hosts.map(
        (h, i) => new SshHostOps(h.config(`h${i}`), { ...(BASES ? { manifests } : {}), keptScripts }),
      );
      const t0 = performance.now();
      let fromBase = 0;
      // One spec for every host, as the orchestrator makes it: what the server works out per
      // deploy (listings, differences, stage tars, patches) hangs off it, once for all hosts.
      const spec = {
        app: "bench",
        releaseId: rel.id,
        manifest: rel.manifest,
        shared: [],
        env: {},
        timeoutMs: 600_000,
      };
      await Promise.all(
        ops.map(async (op) => {
          const result = await op.stage(spec, rel.source, () => undefined, signal);
          if (!result.staged) throw new Error("not staged");
          // "diff": staged from what the host kept of a base (builds that can).
          if (result.manifest === "diff") fromBase++;
          await op.switchTo("bench", rel.id, "current");
        }),
      );
      const wall = (performance.now() - t0) / 1000;
      await Promise.all(ops.map((op) => op.close()));
      await sleep(300); // the per-connection sshd processes are reaped
      const server = process.cpuUsage(server0);
      const hostCpu = hosts.map((h, i) => h.childCpu() - cpu0[i]);
      out[label] = {
        wall,
        hostCpu: median(hostCpu),
        serverCpu: (server.user + server.system) / 1e6 / HOSTS,
        bytes: (sent() - bytes0) / HOSTS,
        wire: hosts.reduce((sum, h, i) => sum + h.wireBytes() - wire0[i], 0) / HOSTS,
        fromBase,
      };
    }
  } finally {
    for (const h of hosts) await h.stop();
  }
  return out;
}

const files = generate();
const changed = files.map((f, i) => (i === 7 ? { ...f, content: randomBytes(f.content.length) } : f));
const results = DISTS.map(() => []);
for (let r = 0; r < ROUNDS; r++) {
  for (const [i, dist] of DISTS.entries()) {
    const res = await round(dist, files, changed);
    results[i].push(res);
    console.error(`round ${r + 1} ${dist}: ${JSON.stringify(res)}`);
  }
}
console.log(`SSH staging, ${HOSTS} hosts, ${FILES} files, ${ROUNDS} rounds (medians):`);
for (const [i, dist] of DISTS.entries()) {
  for (const label of ["full", "one-file"]) {
    const m = (k) => median(results[i].map((x) => x[label][k]));
    console.log(
      `${dist} ${label}: wall ${m("wall").toFixed(2)} s, host CPU ${m("hostCpu").toFixed(2)} s/host, server CPU ${(m("serverCpu") * 1000).toFixed(0)} ms/host, stdin ${(m("bytes") / 1024).toFixed(0)} KiB/host (${m("bytes").toFixed(0)} B), wire ${(m("wire") / 1024).toFixed(0)} KiB/host, from a base on ${m("fromBase")} of ${HOSTS} hosts`,
    );
  }
}
