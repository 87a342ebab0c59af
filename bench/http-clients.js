#!/usr/bin/env node
// What one signed webhook POST costs the sender's CPU with node:http and with
// undici's Pool.request, over kept-alive connections to a receiver in another
// process on loopback, 40 at a time (as the notification thread sends a
// round's chains). Why src/notify/channels/http-post.ts uses undici.
//
//   node bench/http-clients.js [requests=3000]
import { fork } from "node:child_process";
import { createHmac } from "node:crypto";
import http from "node:http";
import { fileURLToPath } from "node:url";
import { Pool } from "undici";

if (process.argv[2] === "receiver") {
  const server = http.createServer((request, response) => {
    request.resume();
    request.on("end", () => response.writeHead(204).end());
  });
  server.keepAliveTimeout = 30_000;
  server.listen(0, "127.0.0.1", () => process.send(server.address().port));
} else {
  const requests = Number(process.argv[2] ?? 3000);
  const concurrency = 40;
  const receiver = fork(fileURLToPath(import.meta.url), ["receiver"]);
  const port = await new Promise((resolve) => receiver.once("message", resolve));
  const url = new URL(`http://127.0.0.1:${port}/hook`);
  const body = JSON.stringify({
    schema: 1,
    delivery: 1,
    event: {
      kind: "deploy.succeeded",
      app: "shop",
      env: "staging",
      deploy: { id: 1, sha: "a".repeat(40), ref: "main" },
      actor: "alice",
      at: new Date().toISOString(),
    },
    links: { deploy: "http://turnout.example/#/deploys/1" },
  });
  const signature = () => createHmac("sha256", "secret-0123456789").update(`1.${body}`).digest("hex");
  const run = async (name, post) => {
    for (const measured of [false, true]) {
      const cpu = process.cpuUsage();
      const started = Date.now();
      let sent = 0;
      await Promise.all(
        Array.from({ length: concurrency }, async () => {
          while (sent++ < requests) await post();
        }),
      );
      const used = process.cpuUsage(cpu);
      if (measured) {
        const us = (used.user + used.system) / requests;
        console.log(
          `${name.padEnd(22)} ${us.toFixed(0).padStart(5)} µs CPU per request  ${Date.now() - started} ms wall`,
        );
      }
    }
  };
  const agent = new http.Agent({ keepAlive: true });
  await run(
    "node:http (keep-alive)",
    () =>
      new Promise((resolve, reject) => {
        const request = http.request(
          url,
          {
            method: "POST",
            agent,
            headers: {
              "content-type": "application/json",
              "x-turnout-signature": signature(),
              "content-length": String(Buffer.byteLength(body)),
            },
          },
          (response) => {
            response.resume();
            response.on("end", resolve);
          },
        );
        request.on("error", reject);
        request.end(body);
      }),
  );
  const pool = new Pool(url.origin, { connections: 32 });
  await run("undici Pool.request", async () => {
    const response = await pool.request({
      path: url.pathname,
      method: "POST",
      headers: { "content-type": "application/json", "x-turnout-signature": signature() },
      body,
    });
    await response.body.dump();
  });
  agent.destroy();
  await pool.close();
  receiver.kill();
}
