// Issue 10, point 5: /healthz stays fast whatever the manifests hold. The
// server re-reads its configuration directory every second while one manifest
// is rewritten every second (so it is really read and parsed each time), and
// a client asks /healthz every 20 ms. Run through bench/run.js (`manifests`).
import { execFileSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { median, report, rssMb, sleep, startServer } from "./lib.js";

function makeRepo(dir) {
  mkdirSync(dir, { recursive: true });
  const env = {
    ...process.env,
    GIT_AUTHOR_NAME: "b",
    GIT_AUTHOR_EMAIL: "b@b",
    GIT_COMMITTER_NAME: "b",
    GIT_COMMITTER_EMAIL: "b@b",
  };
  execFileSync("git", ["init", "-q", "--initial-branch=main"], { cwd: dir, env });
  writeFileSync(path.join(dir, "VERSION"), "1\n");
  execFileSync("git", ["add", "-A"], { cwd: dir, env });
  execFileSync("git", ["commit", "-qm", "one"], { cwd: dir, env });
}

/** A valid manifest of about `bytes`: one environment whose `env` has many variables. */
function validManifest(repo, bytes, round) {
  const lines = [
    `repo: ${JSON.stringify(repo)}`,
    "environments:",
    "  staging:",
    "    deploy:",
    "      provider: shell",
    '      command: ["true"]',
    "      env:",
  ];
  let size = lines.join("\n").length;
  for (let i = 0; size < bytes; i++) {
    const line = `        VAR_${i}: "value ${i} of round ${round} ${"x".repeat(20)}"`;
    lines.push(line);
    size += line.length + 1;
  }
  return `${lines.join("\n")}\n`;
}

/** About `bytes` of flat keys: what made the YAML library's duplicate-key check quadratic. */
function manyKeys(bytes, round) {
  const lines = [];
  let size = 0;
  for (let i = 0; size < bytes; i++) {
    const line = `key_${round}_${i}: ${i}`;
    lines.push(line);
    size += line.length + 1;
  }
  return `${lines.join("\n")}\n`;
}

const CASES = [
  { name: "no other manifest", write: null },
  {
    name: "195 KB valid manifest, rewritten every second",
    write: (repo, r) => validManifest(repo, 195 * 1024, r),
  },
  { name: "2 MB of 20,000+ keys, rewritten every second", write: (_repo, r) => manyKeys(2 * 1024 * 1024, r) },
  { name: "10 MB manifest, rewritten every second", write: (_repo, r) => manyKeys(10 * 1024 * 1024, r) },
];

export async function runManifests(work) {
  const repo = path.join(work, "repo");
  makeRepo(repo);
  const base = `repo: ${JSON.stringify(repo)}\nenvironments:\n  staging:\n    deploy:\n      provider: shell\n      command: ["true"]\n`;
  process.env.TURNOUT_CONFIG_POLL = "1s";
  for (const [index, c] of CASES.entries()) {
    const dir = path.join(work, `case-${index}`);
    const configDir = path.join(dir, "turnout.d");
    mkdirSync(configDir, { recursive: true });
    if (c.write) writeFileSync(path.join(configDir, "big.yaml"), c.write(repo, 0));
    const server = await startServer(dir, base);
    try {
      let round = 1;
      const rewriting = c.write
        ? setInterval(() => writeFileSync(path.join(configDir, "big.yaml"), c.write(repo, round++)), 1000)
        : undefined;
      const latencies = [];
      const until = Date.now() + 10_000;
      while (Date.now() < until) {
        const before = process.hrtime.bigint();
        const res = await fetch(`${server.url}/healthz`);
        await res.arrayBuffer();
        latencies.push(Number(process.hrtime.bigint() - before) / 1e6);
        await sleep(20);
      }
      clearInterval(rewriting);
      latencies.sort((a, b) => a - b);
      const p99 = latencies[Math.floor(latencies.length * 0.99)];
      report(`/healthz, ${c.name}: median`, median(latencies), "ms", "fast whatever the manifests");
      report(`/healthz, ${c.name}: p99 of ${latencies.length}`, p99, "ms", "");
      report(
        `server RSS after 10 s, ${c.name}`,
        rssMb(server.child.pid),
        "MB",
        "reported (parsing runs in a worker thread)",
      );
    } finally {
      await server.stop();
    }
  }
}
