// Artifact uploads (docs/benchmarks.md, "Artifact uploads"): a tar archive
// of many small distinct files uploaded to the built server as a real process
// (`POST /api/v1/apps/:app/artifacts`), and the same tree turned into an
// artifact from a directory (what a fleet build does), timed end to end. Each
// file is new to the store, so every one is written: the figure is the cost
// per file of making it durable. Run through bench/run.js (`node bench/run.js
// upload`); TURNOUT_BENCH_UPLOAD_FILES sets the file count (default 100,000),
// TURNOUT_BENCH_UPLOAD_DATABASE_URL a PostgreSQL database for the server
// (several servers: the upload is published to the shared store too).
import { execFileSync } from "node:child_process";
import { createReadStream, createWriteStream, mkdirSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { pipeline } from "node:stream/promises";
import { pack } from "tar-stream";
import { ROOT, report, startServer } from "./lib.js";

const FILES = Number(process.env.TURNOUT_BENCH_UPLOAD_FILES ?? 100_000);

const manifest = `repo: /nonexistent/bench-upload
environments:
  production:
    deploy:
      provider: fleet
      hosts: { labels: { role: web } }
`;

/** Distinct small files (60–200 bytes) in 100 directories: deterministic names, content unique per run. */
function fileOf(i, salt) {
  const size = 60 + ((i * 7919) % 141);
  const text = `${salt} file ${i} `.repeat(Math.ceil(size / 16)).slice(0, size);
  return { name: `d${i % 100}/f${i}.txt`, text };
}

async function writeTar(file, salt) {
  const archive = pack();
  const written = pipeline(archive, createWriteStream(file));
  for (let i = 0; i < FILES; i++) {
    const { name, text } = fileOf(i, salt);
    archive.entry({ name, mode: 0o644 }, text);
  }
  archive.finalize();
  await written;
  return statSync(file).size;
}

function writeDirectory(dir, salt) {
  for (let d = 0; d < 100; d++) mkdirSync(path.join(dir, `d${d}`), { recursive: true });
  for (let i = 0; i < FILES; i++) {
    const { name, text } = fileOf(i, salt);
    writeFileSync(path.join(dir, name), text);
  }
}

export async function runUpload(work) {
  mkdirSync(work, { recursive: true });
  const tar = path.join(work, "upload.tar");
  const bytes = await writeTar(tar, `upload-${Date.now()}`);
  console.log(`upload: ${FILES} files, ${(bytes / 1024 / 1024).toFixed(1)} MB of tar`);

  // TURNOUT_BENCH_UPLOAD_DATABASE_URL: the server on PostgreSQL, where uploads are also published to the shared store.
  const databaseUrl = process.env.TURNOUT_BENCH_UPLOAD_DATABASE_URL;
  const server = await startServer(
    path.join(work, "server"),
    manifest,
    // On a busy machine the manifest's first parse may take a while: wait for it instead of a 503.
    { TURNOUT_CONFIG_STARTUP_WAIT: "60s", ...(databaseUrl ? { TURNOUT_DATABASE_URL: databaseUrl } : {}) },
  );
  try {
    // What the harness wrote is on disk first: the figure is the server's writing, not the kernel's backlog.
    execFileSync("sync");
    const started = performance.now();
    const response = await fetch(`${server.url}/api/v1/apps/bench/artifacts`, {
      method: "POST",
      headers: {
        authorization: `Bearer ${server.token}`,
        "content-type": "application/x-tar",
        "content-length": String(bytes),
      },
      body: createReadStream(tar),
      duplex: "half",
    });
    const body = await response.json();
    const ms = performance.now() - started;
    if (response.status !== 201) throw new Error(`upload: HTTP ${response.status} ${JSON.stringify(body)}`);
    if (body.artifact.files !== FILES) throw new Error(`upload: ${body.artifact.files} files stored`);
    report(`upload of ${FILES} files (tar, HTTP)`, ms / 1000, "s", "10x faster than an fsync per file");
  } finally {
    await server.stop();
  }

  // The same shape from a directory, through the artifact store of dist/ (a fleet build's last step).
  const dir = path.join(work, "tree");
  writeDirectory(dir, `dir-${Date.now()}`);
  const { ArtifactStore } = await import(path.join(ROOT, "dist", "artifacts", "artifact-store.js"));
  const store = new ArtifactStore({ dir: path.join(work, "dir-store") });
  execFileSync("sync");
  const started = performance.now();
  const stored = await store.fromDirectory(dir);
  const ms = performance.now() - started;
  if (stored.files !== FILES) throw new Error(`directory: ${stored.files} files stored`);
  report(`artifact of a ${FILES}-file directory`, ms / 1000, "s", "10x faster than an fsync per file");
}
