// Notifications (docs/benchmarks.md, "Notifications"): how fast a full outbox
// drains into a local receiver, and what five configured channels cost a
// deploy (throughput, and POST → first command) against none. Run through
// bench/run.js (`node bench/run.js notify`).
import { execFileSync } from "node:child_process";
import { mkdirSync, statSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import path from "node:path";
import { Store } from "../dist/store/store.js";
import { api, median, processCpu, report, sleep, startServer, waitFinished } from "./lib.js";

const SECRET = "bench-secret-0123456789abcdef";

function makeRepo(dir) {
  mkdirSync(dir, { recursive: true });
  const env = {
    ...process.env,
    GIT_AUTHOR_NAME: "b",
    GIT_AUTHOR_EMAIL: "b@b",
    GIT_COMMITTER_NAME: "b",
    GIT_COMMITTER_EMAIL: "b@b",
  };
  const git = (...args) => execFileSync("git", args, { cwd: dir, env });
  git("init", "-q", "--initial-branch=main");
  writeFileSync(path.join(dir, "VERSION"), "1\n");
  git("add", "-A");
  git("commit", "-qm", "one");
}

/** A receiver that accepts everything (signatures are the tests' business) and counts. */
async function startReceiver() {
  const receiver = { count: 0, last: 0 };
  const server = createServer((request, response) => {
    request.resume();
    request.on("end", () => {
      receiver.count++;
      receiver.last = Date.now();
      response.writeHead(204).end();
    });
  });
  server.keepAliveTimeout = 30_000;
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  receiver.url = `http://127.0.0.1:${server.address().port}`;
  receiver.close = () => {
    server.closeAllConnections();
    return new Promise((resolve) => server.close(resolve));
  };
  return receiver;
}

function settingsWith(dir, channels) {
  const file = path.join(dir, "settings.yaml");
  mkdirSync(dir, { recursive: true });
  const lines = Object.entries(channels).map(
    ([name, url]) => `    ${name}: { type: webhook, url: "${url}", secret_env: BENCH_SECRET }`,
  );
  writeFileSync(file, lines.length === 0 ? "{}\n" : `notify:\n  channels:\n${lines.join("\n")}\n`);
  return file;
}

function fakeDeployEvent(i, kind) {
  const at = new Date().toISOString();
  return {
    kind,
    at,
    app: "bench",
    env: "staging",
    actor: "bench",
    deploy: {
      id: 1_000_000 + i,
      number: i,
      label: `bench/staging#${i}`,
      status: "succeeded",
      phase: null,
      trigger: "api",
      user: "bench",
      ref: "main",
      sha: "a".repeat(40),
      previousSha: null,
      components: { app: "a".repeat(40) },
      rollbackOf: null,
      errorCode: null,
      errorMessage: null,
      createdAt: at,
      startedAt: at,
      finishedAt: at,
    },
    text: `bench/staging#${i} succeeded`,
  };
}

async function drain(work, receiver) {
  const dir = path.join(work, "drain");
  const repo = path.join(work, "repo");
  const manifest = `repo: ${JSON.stringify(repo)}\nnotify:\n  - channel: hook\nenvironments:\n  staging:\n    deploy: { provider: shell, command: ["true"] }\n`;
  const env = { BENCH_SECRET: SECRET, TURNOUT_SETTINGS_FILE: settingsWith(dir, { hook: receiver.url }) };
  // A first start creates the database; then, with no server running, 10,000 deliveries are queued.
  const first = await startServer(dir, manifest, env);
  await first.stop();
  const store = await Store.open({ sqliteFile: path.join(first.dataDir, "turnout.db") });
  const kinds = ["deploy.queued", "deploy.started", "deploy.succeeded"];
  for (let i = 0; i < 10_000; i++)
    await store.notify.record(fakeDeployEvent(Math.floor(i / 3), kinds[i % 3]));
  while ((await store.notify.fanOut(500, () => ["hook"])) > 0) {}
  await store.close();
  receiver.count = 0;
  const server = await startServer(dir, manifest, env);
  const started = Date.now();
  while (receiver.count < 10_000) await sleep(20);
  const seconds = (receiver.last - started) / 1000;
  await server.stop();
  report("outbox drain, 10,000 deliveries (from healthy)", 10_000 / seconds, "del/s", "> 500 del/s");
}

async function deploys(work, receiver, channels) {
  const label = channels === 0 ? "no channels" : `${channels} channels`;
  const dir = path.join(work, `deploys-${channels}`);
  const repo = path.join(work, "repo");
  const traceDir = path.join(dir, "trace");
  mkdirSync(traceDir, { recursive: true });
  const named = Object.fromEntries(
    Array.from({ length: channels }, (_, i) => [`hook-${i}`, `${receiver.url}/${i}`]),
  );
  const notify =
    channels === 0
      ? ""
      : `notify:\n${Object.keys(named)
          .map((n) => `  - channel: ${n}\n`)
          .join("")}`;
  const manifest = `repo: ${JSON.stringify(repo)}\n${notify}environments:\n  staging:\n    deploy:\n      provider: shell\n      command: [touch, ${JSON.stringify(path.join(traceDir, "{deploy}"))}]\n`;
  const env = { BENCH_SECRET: SECRET, TURNOUT_SETTINGS_FILE: settingsWith(dir, named) };
  const server = await startServer(dir, manifest, env);
  try {
    // The manifest is parsed in the background: wait for the app.
    while (
      (
        await fetch(`${server.url}/api/v1/apps/bench`, {
          headers: { authorization: `Bearer ${server.token}` },
        })
      ).status !== 200
    )
      await sleep(20);
    const latencies = [];
    for (let i = 0; i < 30; i++) {
      const before = Date.now();
      const { deploy } = await api(server, "POST", "/api/v1/apps/bench/environments/staging/deploys", {});
      for (;;) {
        try {
          latencies.push(statSync(path.join(traceDir, String(deploy.id))).mtimeMs - before);
          break;
        } catch {
          await sleep(1);
        }
      }
      await waitFinished(server, deploy.id);
    }
    report(`POST deploy -> command running, ${label}`, median(latencies), "ms", "within 5 % of none");
    // Throughput: 50 deploys queued at once, one environment (they run one after the other).
    const cpuBefore = processCpu(server.child.pid);
    const started = Date.now();
    const ids = [];
    for (let i = 0; i < 50; i++) {
      ids.push((await api(server, "POST", "/api/v1/apps/bench/environments/staging/deploys", {})).deploy.id);
    }
    await waitFinished(server, ids[ids.length - 1], 20);
    report(
      `deploy throughput, 50 queued, ${label}`,
      50 / ((Date.now() - started) / 1000),
      "dep/s",
      "within 5 % of none",
    );
    // The server's own CPU time per deploy of that batch (its children, the commands, not counted):
    // what notifications cost, and much less sensitive to other load on the machine than wall time.
    const cpuAfter = processCpu(server.child.pid);
    report(
      `server CPU per deploy, ${label}`,
      (cpuAfter.own - cpuBefore.own) / 50,
      "ms",
      "(explains the above)",
    );
    // The deploy chain runs on the main thread; the notification thread and libuv's pool beside it.
    report(
      `  of which the main thread, ${label}`,
      (cpuAfter.mainThread - cpuBefore.mainThread) / 50,
      "ms",
      "(explains the above)",
    );
  } finally {
    await server.stop();
  }
}

export async function runNotify(work) {
  makeRepo(path.join(work, "repo"));
  const receiver = await startReceiver();
  try {
    await drain(work, receiver);
    for (const channels of [0, 5, 0, 5]) await deploys(work, receiver, channels);
  } finally {
    await receiver.close();
  }
}
