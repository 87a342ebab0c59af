#!/usr/bin/env node
// What a deploy costs the server in processes and CPU, rather than in wall
// time (which a loaded machine makes meaningless): the core benchmark's
// repository and `touch` command, 30 deploys after one warm-up, with a
// preload in the server that logs every process it starts. Also the server's
// CPU until /healthz answers, three cold starts. Not part of `npm run bench`.
//
//   node bench/core-processes.js [ROOT]   ROOT: another checkout to measure (its bench/lib.js and bin/)
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { makeOneCommitRepo } from "./lib.js";

const root = path.resolve(process.argv[2] ?? path.join(path.dirname(fileURLToPath(import.meta.url)), ".."));
const { api, median, processCpu, sleep, startServer, waitFinished } = await import(
  path.join(root, "bench", "lib.js")
);
const DEPLOYS = 30;
const work = mkdtempSync(path.join(tmpdir(), "turnout-bench-processes-"));
try {
  const colds = [];
  for (let i = 0; i < 3; i++) {
    const server = await startServer(path.join(work, `cold-${i}`));
    colds.push(processCpu(server.child.pid).own);
    await server.stop();
  }

  const repo = path.join(work, "repo");
  // From this checkout's lib.js: the other checkout's may predate it.
  makeOneCommitRepo(repo);
  const trace = path.join(work, "trace");
  mkdirSync(trace);
  const spawns = path.join(work, "spawns.txt");
  const preload = path.join(work, "log-spawns.cjs");
  writeFileSync(
    preload,
    `const cp = require("child_process"), fs = require("fs");
const spawn = cp.ChildProcess.prototype.spawn;
cp.ChildProcess.prototype.spawn = function (options) {
  fs.appendFileSync(${JSON.stringify(spawns)}, JSON.stringify(options.args) + "\\n");
  return spawn.call(this, options);
};\n`,
  );
  process.env.TURNOUT_BENCH_SERVER_NODE_ARGS = `${process.env.TURNOUT_BENCH_SERVER_NODE_ARGS ?? ""} --require ${preload}`;
  const server = await startServer(
    path.join(work, "latency"),
    `repo: ${JSON.stringify(repo)}\nenvironments:\n  staging:\n    deploy:\n      provider: shell\n      command: [touch, ${JSON.stringify(path.join(trace, "{deploy}"))}]\n`,
  );
  const started = () =>
    readFileSync(spawns, "utf8")
      .split("\n")
      .filter(Boolean)
      .map((line) => JSON.parse(line));
  const latencies = [];
  let before;
  let cpu0;
  let cpu1;
  try {
    // The first deploy clones the mirror: not counted.
    const warm = await api(server, "POST", "/api/v1/apps/bench/environments/staging/deploys", {});
    await waitFinished(server, warm.deploy.id);
    await sleep(1500);
    before = started().length;
    cpu0 = processCpu(server.child.pid);
    for (let i = 0; i < DEPLOYS; i++) {
      const at = Date.now();
      const { deploy } = await api(server, "POST", "/api/v1/apps/bench/environments/staging/deploys", {});
      const file = path.join(trace, String(deploy.id));
      for (;;) {
        try {
          latencies.push(statSync(file).mtimeMs - at);
          break;
        } catch {
          await sleep(1);
        }
      }
      const done = await waitFinished(server, deploy.id);
      if (done.status !== "succeeded") throw new Error(`bench deploy failed: ${JSON.stringify(done)}`);
    }
    // What follows a deploy (the count of undeployed commits, a description) is counted too.
    await sleep(1500);
  } finally {
    cpu1 = processCpu(server.child.pid);
    await server.stop();
  }
  const kinds = new Map();
  for (const argv of started().slice(before)) {
    const name =
      argv[0] === "git"
        ? `git ${argv.slice(1).find((a, i, all) => !a.startsWith("-") && all[i - 1] !== "-c")}`
        : argv[0];
    kinds.set(name, (kinds.get(name) ?? 0) + 1);
  }
  const per = (x) => (x / DEPLOYS).toFixed(1);
  const total = [...kinds.values()].reduce((a, b) => a + b, 0);
  console.log(`${root} (node ${process.version})`);
  console.log(`cold start: server CPU to healthy ${colds.map((c) => c.toFixed(0)).join(", ")} ms`);
  console.log(
    `per deploy: ${per(total)} processes (${[...kinds].map(([k, v]) => `${k} ${per(v)}`).join(", ")}); ` +
      `server CPU ${per(cpu1.own - cpu0.own)} ms, main thread ${per(cpu1.mainThread - cpu0.mainThread)} ms, ` +
      `children ${per(cpu1.children - cpu0.children)} ms; POST -> command median ${median(latencies).toFixed(1)} ms`,
  );
} finally {
  rmSync(work, { recursive: true, force: true });
}
