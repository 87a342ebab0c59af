import { parentPort, workerData } from "node:worker_threads";
import { parseManifest } from "./manifest-loader.js";
import type { ParseJob, ParseReply, ParserReady, ParserWorkerData } from "./manifest-parser.js";

/**
 * The manifest parser's worker thread (started by manifest-parser.ts): parses
 * one manifest per message and answers with the plain result, so the
 * server's main thread never holds a YAML document and never waits on one.
 */
const { load, hold } = workerData as ParserWorkerData;

parentPort?.on("message", (job: ParseJob) => {
  // Tests hold the worker here to observe the server while a parse is in progress.
  if (hold) Atomics.wait(hold, 0, 0);
  const reply: ParseReply = { id: job.id, result: parseManifest(job.file, job.text, load) };
  parentPort?.postMessage(reply);
});

const ready: ParserReady = { ready: true };
parentPort?.postMessage(ready);
