#!/usr/bin/env node
// Self time by function in a V8 .cpuprofile (node --cpu-prof), over a window
// of the monotonic clock in µs (what bench/scale.js prints with
// TURNOUT_BENCH_SCALE_MARKS=1), top 40. Where a server spends a deploy.
//
//   node bench/profile-window.js PROFILE.cpuprofile [FROM_US TO_US]
import { readFileSync } from "node:fs";

const [file, from, to] = process.argv.slice(2);
if (!file) {
  console.error("usage: node bench/profile-window.js PROFILE.cpuprofile [FROM_US TO_US]");
  process.exit(2);
}
const profile = JSON.parse(readFileSync(file, "utf8"));
const start = from === undefined ? Number.NEGATIVE_INFINITY : Number(from);
const end = to === undefined ? Number.POSITIVE_INFINITY : Number(to);
const nodes = new Map(profile.nodes.map((n) => [n.id, n]));
const self = new Map();
let time = profile.startTime;
let total = 0;
for (let i = 0; i < profile.samples.length; i++) {
  time += profile.timeDeltas[i];
  const delta = profile.timeDeltas[i + 1] ?? 0;
  if (time < start || time > end) continue;
  const node = nodes.get(profile.samples[i]);
  const { functionName, url, lineNumber } = node.callFrame;
  if (functionName === "(idle)") continue;
  const key = `${functionName || "(anonymous)"} ${url.replace(/^.*\/(dist|node_modules)\//, "$1/")}:${lineNumber + 1}`;
  self.set(key, (self.get(key) ?? 0) + delta);
  total += delta;
}
console.log(`busy ${(total / 1000).toFixed(0)} ms in the window`);
for (const [key, us] of [...self].sort((a, b) => b[1] - a[1]).slice(0, 40)) {
  console.log(
    `${(us / 1000).toFixed(1).padStart(8)} ms ${((us / total) * 100).toFixed(1).padStart(5)}%  ${key}`,
  );
}
