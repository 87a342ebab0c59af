#!/usr/bin/env node
// Compiles src/ into dist/ (tsc), bundles the agent into dist/agent/turnout-agent.cjs
// (bin/build-agent.js, esbuild) and web/ into dist/web (Vite) when, and only
// when, something that build reads has changed since its last success: `npm start` and `npm test` run this
// first, and a restart with nothing changed must not pay a compile (it cost
// 49 s on a loaded 2-core machine). `prepare` runs it after `npm install` /
// `npm ci` and before `npm pack`, so a clone is built once, at install.
//
// The check reads and hashes the inputs (src/, the tsconfig files,
// package.json, package-lock.json for the server; web/, package.json and
// package-lock.json for the web UI) and compares them with the list recorded
// by the last build of each: no TypeScript is loaded when nothing changed, so it costs
// about one Node start. Content, not mtimes: a checkout or `touch` that
// changes nothing costs nothing. tsc itself runs incrementally
// (tsconfig.build.json), so a one-file change recompiles little.
//
//   node bin/build-if-changed.js           build if needed (silent when up to date)
//   node bin/build-if-changed.js --force   build anyway
//
// The published package ships dist/ already built, and no src/ (see "files"
// in package.json): there this does nothing, should an npm run `prepare` when
// installing the package from a tarball.
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const DIST = path.join(ROOT, "dist");
const LOCK = path.join(DIST, ".build-lock");

/**
 * The two builds: each with its inputs, the file that proves its output is
 * there, and where it records what it was built from (`<sha256>  <path>`
 * lines). The web UI's JavaScript depends on web/ and the packages only:
 * the types it shares with src/ are erased.
 */
const TARGETS = [
  {
    name: "server",
    source: "src",
    files: ["tsconfig.json", "tsconfig.build.json", "package.json", "package-lock.json"],
    output: path.join(DIST, "main.js"),
    record: path.join(DIST, ".build-inputs"),
    build: buildServer,
  },
  {
    // The host agent as one file with no native modules (bin/build-agent.js).
    name: "agent bundle",
    source: "src",
    // A tree without the bundler (this script's own tests copy only it) has no agent to bundle.
    needs: "bin/build-agent.js",
    files: ["package.json", "package-lock.json", "bin/build-agent.js"],
    output: path.join(DIST, "agent", "turnout-agent.cjs"),
    record: path.join(DIST, ".agent-build-inputs"),
    build: buildAgentBundle,
  },
  {
    name: "web UI",
    source: "web",
    files: ["package.json", "package-lock.json"],
    output: path.join(DIST, "web", "index.html"),
    record: path.join(DIST, ".web-build-inputs"),
    build: buildWeb,
  },
];

function main(argv) {
  const force = argv.includes("--force");
  const unknown = argv.filter((a) => a !== "--force");
  if (unknown.length > 0) {
    process.stderr.write(`usage: node bin/build-if-changed.js [--force] (unknown: ${unknown.join(" ")})\n`);
    return 2;
  }
  for (const target of TARGETS) {
    // The published package has no sources: its dist/ is the build.
    if (!statSync(path.join(ROOT, target.source), { throwIfNoEntry: false })) continue;
    if (target.needs && !statSync(path.join(ROOT, target.needs), { throwIfNoEntry: false })) continue;
    if (!force && upToDate(target, inputs(target))) continue;
    const status = withLock(() => {
      // Whoever held the lock may just have built the same inputs.
      const now = inputs(target);
      if (!force && upToDate(target, now)) return 0;
      return target.build(target, now);
    });
    if (status !== 0) return status;
  }
  return 0;
}

/** path → sha256 of every input of a target, sorted by path. */
function inputs(target) {
  const files = [
    ...target.files.filter((f) => statSync(path.join(ROOT, f), { throwIfNoEntry: false })),
    ...walk(target.source),
  ];
  files.sort();
  return new Map(
    files.map((f) => [
      f,
      createHash("sha256")
        .update(readFileSync(path.join(ROOT, f)))
        .digest("hex"),
    ]),
  );
}

function walk(dir) {
  const found = [];
  for (const entry of readdirSync(path.join(ROOT, dir), { withFileTypes: true })) {
    const rel = `${dir}/${entry.name}`;
    if (entry.isDirectory()) found.push(...walk(rel));
    else if (entry.isFile()) found.push(rel);
  }
  return found;
}

function serialize(map) {
  return [...map].map(([file, hash]) => `${hash}  ${file}\n`).join("");
}

function recorded(target) {
  let text;
  try {
    text = readFileSync(target.record, "utf8");
  } catch {
    return new Map();
  }
  const map = new Map();
  for (const line of text.split("\n")) {
    const match = /^([0-9a-f]{64}) {2}(.+)$/.exec(line);
    if (match) map.set(match[2], match[1]);
  }
  return map;
}

function upToDate(target, now) {
  // dist/ removed or half there: build, whatever the record says.
  if (!statSync(target.output, { throwIfNoEntry: false })) return false;
  return (
    statSync(target.record, { throwIfNoEntry: false }) !== undefined &&
    serialize(recorded(target)) === serialize(now)
  );
}

function buildServer(target, now) {
  const tsc = path.join(ROOT, "node_modules", "typescript", "bin", "tsc");
  if (!statSync(tsc, { throwIfNoEntry: false })) {
    process.stderr.write(
      "turnout: cannot build dist/: TypeScript is not installed (run `npm install` with dev dependencies)\n",
    );
    return 1;
  }
  const before = recorded(target);
  process.stderr.write(`turnout: compiling src/ into dist/ (${describeChange(before, now)})…\n`);
  // A source that is gone leaves its compiled file behind (tsc never deletes): remove it, so
  // nothing stale can be imported or packed.
  for (const file of before.keys()) {
    if (now.has(file) || !/^src\/.+\.ts$/.test(file)) continue;
    const out = path.join(DIST, file.slice("src/".length).replace(/\.ts$/, ".js"));
    rmSync(out, { force: true });
    rmSync(`${out}.map`, { force: true });
  }
  const result = spawnSync(process.execPath, [tsc, "-p", "tsconfig.build.json"], {
    cwd: ROOT,
    stdio: "inherit",
  });
  if (result.status !== 0) return result.status ?? 1;
  // The inputs as they were when tsc started: an edit made during the build counts as a change.
  writeFileSync(target.record, serialize(now));
  return 0;
}

function buildAgentBundle(target, now) {
  process.stderr.write(
    `turnout: bundling the agent into dist/agent/turnout-agent.cjs (${describeChange(recorded(target), now)})…\n`,
  );
  // Its own process: esbuild is a dev dependency this script must not need when nothing changed.
  const result = spawnSync(process.execPath, [path.join(ROOT, "bin", "build-agent.js")], {
    cwd: ROOT,
    stdio: "inherit",
  });
  if (result.status !== 0) return result.status ?? 1;
  writeFileSync(target.record, serialize(now));
  return 0;
}

function buildWeb(target, now) {
  const vite = path.join(ROOT, "node_modules", "vite", "bin", "vite.js");
  if (!statSync(vite, { throwIfNoEntry: false })) {
    process.stderr.write(
      "turnout: cannot build dist/web: Vite is not installed (run `npm install` with dev dependencies)\n",
    );
    return 1;
  }
  process.stderr.write(
    `turnout: building the web UI into dist/web (${describeChange(recorded(target), now)})…\n`,
  );
  const result = spawnSync(
    process.execPath,
    [vite, "build", "--config", "web/vite.config.ts", "--logLevel", "warn"],
    // A production build whoever runs it (vitest's workers have NODE_ENV=test).
    { cwd: ROOT, stdio: "inherit", env: { ...process.env, NODE_ENV: "production" } },
  );
  if (result.status !== 0) return result.status ?? 1;
  writeFileSync(target.record, serialize(now));
  return 0;
}

function describeChange(before, now) {
  if (before.size === 0) return "first build";
  const changed = [...now.keys()].filter((f) => before.get(f) !== now.get(f));
  const removed = [...before.keys()].filter((f) => !now.has(f));
  const all = [...changed, ...removed];
  if (all.length === 0) return "dist/ incomplete";
  return `${all.length} changed: ${all.slice(0, 3).join(", ")}${all.length > 3 ? ", …" : ""}`;
}

/**
 * One build at a time (test files build in parallel workers). The lock is a
 * directory holding the builder's pid: a lock whose process is gone was left
 * by a killed build and is taken over.
 */
function withLock(work) {
  mkdirSync(DIST, { recursive: true });
  for (;;) {
    try {
      mkdirSync(LOCK);
      break;
    } catch (error) {
      if (error.code !== "EEXIST") throw error;
      if (!holderAlive()) {
        rmSync(LOCK, { recursive: true, force: true });
        continue;
      }
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 100);
    }
  }
  try {
    writeFileSync(path.join(LOCK, "pid"), String(process.pid));
    return work();
  } finally {
    rmSync(LOCK, { recursive: true, force: true });
  }
}

function holderAlive() {
  let pid;
  try {
    pid = Number(readFileSync(path.join(LOCK, "pid"), "utf8"));
  } catch {
    // Just created, pid not written yet: alive. Or left empty by a kill: judged by its age.
    const age = Date.now() - (statSync(LOCK, { throwIfNoEntry: false })?.mtimeMs ?? 0);
    return age < 10_000;
  }
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return error.code === "EPERM";
  }
}

process.exitCode = main(process.argv.slice(2));
