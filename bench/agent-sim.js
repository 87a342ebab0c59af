#!/usr/bin/env node
// The agent simulator (docs/benchmarks.md, "Control plane at scale"): one
// process holding many agent connections that speak the real protocol — each
// is the real Agent of dist/agent/agent.js over an in-memory host
// (dist/agent/simulator/) — so one machine can stand in for a thousand hosts.
// Needs the built server (npm run build).
//
//   TURNOUT_TOKEN=tnt_… node bench/agent-sim.js --server http://127.0.0.1:7700 \
//       --hosts 1000 --label role=web [--server URL …] [--prefix sim] \
//       [--stage-delay 50] [--run-delay 0] [--no-fetch] [--connect-rate 500]
//
// Runs until SIGINT or SIGTERM. Prints `agent-sim: connected K/N` when the
// count changes (at most once a second) and `agent-sim: all N connected`.
import { parseArgs } from "node:util";
import { AgentSimulator } from "../dist/agent/simulator/agent-simulator.js";

const { values } = parseArgs({
  options: {
    server: { type: "string", multiple: true },
    token: { type: "string" },
    hosts: { type: "string", default: "100" },
    prefix: { type: "string", default: "sim" },
    label: { type: "string", multiple: true, default: [] },
    "stage-delay": { type: "string", default: "50" },
    "run-delay": { type: "string", default: "0" },
    "no-fetch": { type: "boolean", default: false },
    "connect-rate": { type: "string", default: "500" },
    heartbeat: { type: "string" },
  },
});

function fail(message) {
  console.error(`agent-sim: ${message}`);
  process.exit(2);
}
const count = (name, text) => {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 0) fail(`--${name} takes a whole number, got ${JSON.stringify(text)}`);
  return n;
};
const token = values.token ?? process.env.TURNOUT_TOKEN;
if (!values.server?.length) fail("--server URL is required (repeat it to spread hosts over several servers)");
if (!token) fail("an enrollment token is required: TURNOUT_TOKEN or --token");
const labels = {};
for (const label of values.label) {
  const eq = label.indexOf("=");
  if (eq <= 0) fail(`--label takes KEY=VALUE, got ${JSON.stringify(label)}`);
  labels[label.slice(0, eq)] = label.slice(eq + 1);
}

const sim = new AgentSimulator({
  servers: values.server.map((s) => s.replace(/\/+$/, "")),
  token,
  count: count("hosts", values.hosts),
  prefix: values.prefix,
  labels,
  stageDelayMs: count("stage-delay", values["stage-delay"]),
  runDelayMs: count("run-delay", values["run-delay"]),
  fetchBlobs: !values["no-fetch"],
  connectPerSecond: count("connect-rate", values["connect-rate"]),
  ...(values.heartbeat ? { heartbeatMs: count("heartbeat", values.heartbeat) } : {}),
  print: (line) => console.log(line),
});

let stopping = false;
for (const signal of ["SIGINT", "SIGTERM"]) {
  process.once(signal, async () => {
    if (stopping) return;
    stopping = true;
    clearInterval(progress);
    await sim.stop();
    console.log("agent-sim: stopped");
    process.exit(0);
  });
}

console.log(
  `agent-sim: ${sim.hosts.length} hosts over ${values.server.length} server(s), stage delay ${values["stage-delay"]} ms, blobs ${values["no-fetch"] ? "not fetched" : "fetched"} (pid ${process.pid})`,
);
let said = -1;
const progress = setInterval(() => {
  const connected = sim.connectedCount();
  if (connected === said) return;
  said = connected;
  console.log(
    connected === sim.hosts.length
      ? `agent-sim: all ${connected} connected`
      : `agent-sim: connected ${connected}/${sim.hosts.length}`,
  );
}, 1000);
await sim.start();
