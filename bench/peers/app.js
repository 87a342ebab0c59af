// The sample app of the peer benchmark: 3,002 files, 52.5 MB, the same bytes
// on every run (sizes, paths and content come from fixed seeds, and the
// content is an AES-CTR key stream, so nothing compresses), in a bare
// repository served by a real `git daemon` on loopback. Two tags: `base` (the
// full release) and `onefile` (one 8 KiB text file changed).
import { execFileSync, spawn } from "node:child_process";
import { createCipheriv } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { freePort, sleep, track } from "../lib.js";

export const FILES = 3002;
export const BYTES = 52_500_000;
/** The file the one-file release changes; its first line names the release, which the checks read. */
export const MARKER = "version.txt";

const gitEnv = {
  PATH: process.env.PATH,
  HOME: "/nonexistent",
  GIT_CONFIG_NOSYSTEM: "1",
  GIT_AUTHOR_NAME: "bench",
  GIT_AUTHOR_EMAIL: "bench@example.invalid",
  GIT_COMMITTER_NAME: "bench",
  GIT_COMMITTER_EMAIL: "bench@example.invalid",
  GIT_AUTHOR_DATE: "2026-01-01T00:00:00Z",
  GIT_COMMITTER_DATE: "2026-01-01T00:00:00Z",
};
export const git = (cwd, ...args) => execFileSync("git", args, { cwd, env: gitEnv, encoding: "utf8" }).trim();

function prng(seed) {
  let s = seed | 0;
  return () => {
    s = (s + 0x6d2b79f5) | 0;
    let t = Math.imul(s ^ (s >>> 15), 1 | s);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A deterministic, incompressible byte stream (AES-128-CTR over zeros with a fixed key). */
function stream(label) {
  const key = Buffer.alloc(16);
  key.write(label.slice(0, 16));
  const cipher = createCipheriv("aes-128-ctr", key, Buffer.alloc(16));
  return (n) => cipher.update(Buffer.alloc(n));
}

export const markerText = (release) => {
  const head = `turnout-bench-peers ${release}\n`;
  return head + "x".repeat(8192 - head.length - 1) + "\n";
};

/** Writes the tree, commits `base` then `onefile`, and returns the bare repository's path and both tags' commits. */
export function generateApp(work) {
  const tree = path.join(work, "app-src");
  const random = prng(0x7e57);
  const bytes = stream("turnout-peers-01");
  // 3,000 files of 100 B – 64 KiB (log-uniform), 24 of them large ones that take the rest, plus
  // version.txt and README.
  const small = FILES - 2 - 24;
  const sizes = Array.from({ length: small }, () => Math.round(100 * Math.exp(random() * Math.log(655.36))));
  const readme = "A generated app for `npm run bench:peers` (bench/peers/app.js).\n";
  const rest = BYTES - sizes.reduce((a, b) => a + b, 0) - 8192 - readme.length;
  const weights = Array.from({ length: 24 }, () => 0.5 + random());
  const weightSum = weights.reduce((a, b) => a + b, 0);
  let left = rest;
  weights.forEach((w, i) => {
    const size = i === weights.length - 1 ? left : Math.round((rest * w) / weightSum);
    sizes.push(size);
    left -= size;
  });
  mkdirSync(tree, { recursive: true });
  sizes.forEach((size, i) => {
    const parts = [`pkg${i % 9}`, `mod${i % 7}`, `part${i % 5}`].slice(0, i % 4);
    const dir = path.join(tree, ...parts);
    mkdirSync(dir, { recursive: true });
    writeFileSync(path.join(dir, `f${i}.${i >= small ? "bin" : "dat"}`), bytes(size));
  });
  writeFileSync(path.join(tree, "README"), readme);
  writeFileSync(path.join(tree, MARKER), markerText("base"));
  git(tree, "init", "-q", "--initial-branch=main");
  git(tree, "config", "gc.auto", "0");
  git(tree, "add", "-A");
  git(tree, "commit", "-qm", "a generated app");
  git(tree, "tag", "base");
  writeFileSync(path.join(tree, MARKER), markerText("onefile"));
  git(tree, "commit", "-qam", "one changed file");
  git(tree, "tag", "onefile");
  const bare = path.join(work, "git", "app.git");
  mkdirSync(path.dirname(bare), { recursive: true });
  git(work, "clone", "-q", "--bare", tree, bare);
  // `git archive --remote` of the floor asks the daemon for a tag: allowed by upload-archive.
  git(bare, "config", "daemon.uploadarch", "true");
  return {
    bare,
    refs: {
      base: git(bare, "rev-parse", "base^{commit}"),
      onefile: git(bare, "rev-parse", "onefile^{commit}"),
    },
    files: Number(git(bare, "ls-tree", "-r", "--name-only", "base").split("\n").length),
    bytes: sizes.reduce((a, b) => a + b, 0) + 8192 + readme.length,
  };
}

/** `git daemon` serving the bare repository read-only on 127.0.0.1. */
export async function startGitDaemon(app) {
  const port = await freePort();
  const child = track(
    spawn(
      "git",
      [
        "daemon",
        "--reuseaddr",
        "--listen=127.0.0.1",
        `--port=${port}`,
        `--base-path=${path.dirname(app.bare)}`,
        "--export-all",
        "--enable=upload-archive",
        "--informative-errors",
        path.dirname(app.bare),
      ],
      { env: gitEnv, stdio: ["ignore", "ignore", "pipe"] },
    ),
  );
  let err = "";
  child.stderr.on("data", (d) => (err += d));
  const url = `git://127.0.0.1:${port}/app.git`;
  for (let i = 0; ; i++) {
    try {
      execFileSync("git", ["ls-remote", url, "base"], { env: gitEnv, stdio: "pipe" });
      break;
    } catch (e) {
      if (i > 100 || child.exitCode !== null)
        throw new Error(`git daemon did not start: ${err} ${e.message}`);
      await sleep(100);
    }
  }
  return { url, port, child };
}
