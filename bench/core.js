// The server's own budget: cold start, idle memory, deploy latency, read
// throughput (docs/benchmarks.md, "Server and API"). Run through bench/run.js.
import { mkdirSync, statSync } from "node:fs";
import path from "node:path";
import autocannon from "autocannon";
import { api, makeOneCommitRepo, median, report, rssMb, sleep, startServer, waitFinished } from "./lib.js";

// Watches for the probe's file without asking the server anything, so the
// harness does not compete with the deploy it is timing.
async function waitForFile(file) {
  for (;;) {
    try {
      return statSync(file);
    } catch {
      await sleep(1);
    }
  }
}

export async function runCore(work) {
  // 1. Cold start to healthy, and idle memory.
  const starts = [];
  for (let i = 0; i < 5; i++) {
    const server = await startServer(path.join(work, `cold-${i}`));
    starts.push(server.coldStartMs);
    if (i === 4) {
      await sleep(3000);
      report("idle RSS after start (MB)", rssMb(server.child.pid), "MB", "< 120 MB");
    }
    await server.stop();
  }
  report("cold start to healthy, median of 5", median(starts), "ms", "< 1500 ms");

  // 2. POST …/deploys to the deploy's first command starting.
  const repo = path.join(work, "repo");
  makeOneCommitRepo(repo);
  // The probe command is `touch`: its file's mtime is the moment the command ran.
  const traceDir = path.join(work, "trace");
  mkdirSync(traceDir);
  const server = await startServer(
    path.join(work, "latency"),
    `repo: ${JSON.stringify(repo)}\nenvironments:\n  staging:\n    deploy:\n      provider: shell\n      command: [touch, ${JSON.stringify(path.join(traceDir, "{deploy}"))}]\n`,
  );
  try {
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
  } finally {
    await server.stop();
  }
}
