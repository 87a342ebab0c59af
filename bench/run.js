#!/usr/bin/env node
// `npm run bench`: the performance budget of docs/benchmarks.md, measured on
// the built server as a real process. Prints one line per figure with the
// budget next to it, then the CPU steal of the run. Nothing here is asserted
// by the test suite.
//
//   node bench/run.js            everything: core (server and API), fleet, then uploads
//   node bench/run.js fleet      only the fleet benchmark (npm run bench:fleet)
//   node bench/run.js core       only the server and API figures
//   node bench/run.js upload     only artifact uploads (npm run bench:upload)
//   node bench/run.js ui         only the web UI (bundle size, overview of 200 apps in Chromium)
//   node bench/run.js manifests  only /healthz while big or hostile manifests are re-read
//   node bench/run.js notify     only notifications (outbox drain rate; deploys with 5 channels vs none)
//   node bench/run.js scale      only the control plane at scale (simulated agents; not part of the default run)
import { mkdtempSync, rmSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import path from "node:path";
import { runCore } from "./core.js";
import { runFleet } from "./fleet.js";
import { cpuTimes, killAll, stealPercent } from "./lib.js";
import { runManifests } from "./manifests.js";
import { runNotify } from "./notify.js";
import { runScale } from "./scale.js";
import { runUi } from "./ui.js";
import { runUpload } from "./upload.js";

const suites = {
  core: runCore,
  manifests: runManifests,
  fleet: runFleet,
  upload: runUpload,
  ui: runUi,
  notify: runNotify,
  scale: runScale,
};
// Minutes long and a thousand connections: only when asked for by name.
const onRequest = new Set(["scale"]);
const wanted = process.argv.slice(2);
for (const name of wanted) {
  if (!(name in suites)) {
    console.error(`unknown benchmark ${JSON.stringify(name)}; known: ${Object.keys(suites).join(", ")}`);
    process.exit(2);
  }
}
const selected = wanted.length > 0 ? wanted : Object.keys(suites).filter((name) => !onRequest.has(name));

const work = mkdtempSync(path.join(tmpdir(), "turnout-bench-"));
// A benchmark interrupted with ^C still removes its processes' files.
for (const signal of ["SIGINT", "SIGTERM"]) {
  process.once(signal, () => {
    killAll();
    rmSync(work, { recursive: true, force: true });
    process.exit(130);
  });
}
const cpuAtStart = cpuTimes();
try {
  console.log(`turnout bench: node ${process.version}, ${cpus().length} cores (${cpus()[0]?.model ?? "?"})`);
  for (const name of selected) {
    const started = cpuTimes();
    await suites[name](path.join(work, name));
    if (selected.length > 1) {
      console.log(`CPU steal during ${name}: ${stealPercent(started, cpuTimes()).toFixed(1)}%`);
    }
  }
  console.log(
    `CPU steal during the run: ${stealPercent(cpuAtStart, cpuTimes()).toFixed(1)}% (time the VM's cores were taken by other guests)`,
  );
} finally {
  killAll();
  rmSync(work, { recursive: true, force: true });
}
