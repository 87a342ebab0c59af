// biome-ignore-all lint/suspicious/noExplicitAny: API responses are untyped JSON in these tests
import type { AddressInfo } from "node:net";
import type { FastifyInstance } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { DeployEvent, EngineApi } from "../../src/engine/api.js";
import { buildHttpApp } from "../../src/http/app.js";
import { startTurnout, type TestTurnout } from "../helpers/turnout.js";
import { until } from "../helpers/wait.js";
import { followLog, logText } from "./sse-client.js";

/**
 * Deploy logs over HTTP: JSON pages and the live SSE stream. The deploys are
 * real shell scripts; "staging" prints slowly (so followers join mid-way),
 * "production" prints more than one JSON page at once.
 */
const MANIFEST = `repo: "{repo}"
environments:
  staging:
    branch: main
    deploy:
      provider: shell
      script: |
        for i in $(seq 1 30); do
          echo "line $i: héllo wörld ✓ $(printf '%060d' "$i")"
          sleep 0.05
        done
        echo "all done"
      timeout: 2m
  production:
    branch: main
    deploy:
      provider: shell
      command: [seq, "1", "250000"]
      timeout: 2m
`;

let t: TestTurnout;

beforeAll(async () => {
  t = await startTurnout({ manifest: MANIFEST });
});

afterAll(async () => {
  await t?.stop();
});

async function startDeploy(env: string): Promise<number> {
  const res = await t.api("POST", `/api/v1/apps/shop/environments/${env}/deploys`, {});
  expect(res.status).toBe(202);
  return res.body.deploy.id as number;
}

/** The whole stored log, read straight from the store in one go. */
async function storedLog(id: number): Promise<string> {
  const { chunks } = await t.store.logs.read(id, 0, 1024 * 1024 * 1024);
  return chunks.map((c) => c.text).join("");
}

describe("GET /deploys/:id/log as JSON", () => {
  it("pages by offset until complete, every byte once", async () => {
    const id = await startDeploy("production");
    await t.waitForDeploy(id);
    const full = await storedLog(id);
    expect(Buffer.byteLength(full)).toBeGreaterThan(1024 * 1024);
    expect(full).toContain("\n249999\n250000\n");

    let offset = 0;
    let text = "";
    let pages = 0;
    for (;;) {
      const res = await t.api("GET", `/api/v1/deploys/${id}/log?offset=${offset}`);
      expect(res.status).toBe(200);
      expect(res.body.status).toBe("succeeded");
      for (const chunk of res.body.chunks) {
        expect(chunk.offset).toBe(offset);
        text += chunk.text;
        offset += Buffer.byteLength(chunk.text);
      }
      expect(res.body.nextOffset).toBe(offset);
      pages++;
      if (res.body.complete) break;
      expect(pages).toBeLessThan(20);
    }
    expect(pages).toBeGreaterThan(1);
    expect(text).toBe(full);

    // Past the end: nothing, still complete.
    const after = await t.api("GET", `/api/v1/deploys/${id}/log?offset=${offset}`);
    expect(after.body).toEqual({
      chunks: [],
      nextOffset: offset,
      complete: true,
      status: "succeeded",
      prunedAt: null,
    });
  });

  it("starts mid-chunk at the exact byte asked for", async () => {
    const id = (await t.store.deploys.getByNumber("shop", "production", 1)).id;
    const full = Buffer.from(await storedLog(id));
    const res = await t.api("GET", `/api/v1/deploys/${id}/log?offset=1001`);
    expect(res.body.chunks[0].offset).toBe(1001);
    const text = res.body.chunks.map((c: any) => c.text).join("");
    expect(text).toBe(full.subarray(1001, res.body.nextOffset).toString());
  });

  it("is not complete while the deploy runs", async () => {
    const id = await startDeploy("staging");
    await until(async () => (await t.store.logs.end(id)).offset > 0, 15_000, "first log bytes");
    const res = await t.api("GET", `/api/v1/deploys/${id}/log`);
    expect(res.status).toBe(200);
    expect(res.body.complete).toBe(false);
    expect(["queued", "running"]).toContain(res.body.status);
    await t.waitForDeploy(id);
    const done = await t.api("GET", `/api/v1/deploys/${id}/log`);
    expect(done.body.complete).toBe(true);
    expect(done.body.chunks.map((c: any) => c.text).join("")).toBe(await storedLog(id));
  });

  it("rejects negative or non-numeric offsets", async () => {
    const id = (await t.store.deploys.getByNumber("shop", "production", 1)).id;
    expect((await t.api("GET", `/api/v1/deploys/${id}/log?offset=-1`)).status).toBe(400);
    expect((await t.api("GET", `/api/v1/deploys/${id}/log?offset=abc`)).status).toBe(400);
  });
});

describe("GET /deploys/:id/log as an event stream", () => {
  it("a follower gets every byte exactly once, in order, then `end`", async () => {
    const id = await startDeploy("staging");
    const result = await followLog(`${t.url}/api/v1/deploys/${id}/log`, t.adminToken);
    expect(result.status).toBe(200);
    expect(result.contentType).toMatch(/^text\/event-stream/);
    expect(result.endedByServer).toBe(true);

    const full = await storedLog(id);
    expect(logText(result.events)).toBe(full);
    expect(full).toContain("line 30: héllo wörld ✓");
    expect(full).toContain("all done");

    const ends = result.events.filter((e) => e.event === "end");
    expect(ends).toHaveLength(1);
    expect(result.events[result.events.length - 1]!.event).toBe("end");
    expect(JSON.parse(ends[0]!.data).deploy).toMatchObject({
      id,
      status: "succeeded",
      label: "shop/staging#2",
    });
    const statuses = result.events.filter((e) => e.event === "status").map((e) => JSON.parse(e.data).deploy);
    expect(statuses.length).toBeGreaterThan(0);
    for (const deploy of statuses) expect(deploy.id).toBe(id);
    // Several log events: the follower saw the log arrive live, not in one piece at the end.
    expect(result.events.filter((e) => e.event === "log").length).toBeGreaterThan(2);
  });

  it("reconnecting with Last-Event-ID resumes exactly where the stream stopped", async () => {
    const id = await startDeploy("staging");
    const first = await followLog(`${t.url}/api/v1/deploys/${id}/log`, t.adminToken, {
      stopWhen: (events) => events.filter((e) => e.event === "log").length >= 3,
    });
    expect(first.endedByServer).toBe(false);
    expect(first.events.some((e) => e.event === "end")).toBe(false);
    const logs = first.events.filter((e) => e.event === "log");
    const lastId = logs[logs.length - 1]!.id!;
    const firstText = logText(first.events);
    expect(Buffer.byteLength(firstText)).toBe(Number(lastId));

    // The query offset is ignored in favour of Last-Event-ID, as an EventSource would send both.
    const second = await followLog(`${t.url}/api/v1/deploys/${id}/log?offset=0`, t.adminToken, {
      lastEventId: lastId,
    });
    expect(second.endedByServer).toBe(true);
    const secondLogs = second.events.filter((e) => e.event === "log");
    expect(JSON.parse(secondLogs[0]!.data).offset).toBe(Number(lastId));
    const secondText = logText(second.events, Number(lastId));
    expect(firstText + secondText).toBe(await storedLog(id));
    expect(second.events[second.events.length - 1]!.event).toBe("end");
  });

  it("replays a finished deploy from ?offset and ends", async () => {
    const id = (await t.store.deploys.getByNumber("shop", "staging", 1)).id;
    const full = Buffer.from(await storedLog(id));
    const result = await followLog(`${t.url}/api/v1/deploys/${id}/log?offset=100`, t.adminToken);
    expect(result.endedByServer).toBe(true);
    expect(logText(result.events, 100)).toBe(full.subarray(100).toString());
    expect(result.events.map((e) => e.event).filter((e) => e !== "log")).toEqual(["end"]);
  });

  it("an offset inside a multi-byte character neither stalls nor shifts the stream", async () => {
    const id = (await t.store.deploys.getByNumber("shop", "staging", 1)).id;
    const full = Buffer.from(await storedLog(id));
    const midChar = full.indexOf(Buffer.from("é")) + 1;
    const result = await followLog(`${t.url}/api/v1/deploys/${id}/log?offset=${midChar}`, t.adminToken);
    expect(result.endedByServer).toBe(true);
    const logs = result.events.filter((e) => e.event === "log");
    expect(JSON.parse(logs[0]!.data).offset).toBe(midChar);
    const firstEnd = Number(logs[0]!.id);
    // Everything after the first (trimmed) chunk is exact, up to the last byte.
    expect(logText(logs.slice(1), firstEnd)).toBe(full.subarray(firstEnd).toString());
    expect(logs[logs.length - 1]!.id).toBe(String(full.length));
    expect(result.events[result.events.length - 1]!.event).toBe("end");
  });

  it("errors before the stream starts are plain JSON", async () => {
    const unauthenticated = await fetch(`${t.url}/api/v1/deploys/1/log`, {
      headers: { accept: "text/event-stream" },
    });
    expect(unauthenticated.status).toBe(401);
    expect(((await unauthenticated.json()) as any).error.code).toBe("E_UNAUTHORIZED");
    const missing = await followLog(`${t.url}/api/v1/deploys/999999/log`, t.adminToken);
    expect(missing.status).toBe(404);
  });
});

describe("streams served by another process", () => {
  let app: FastifyInstance;
  let url: string;
  let subscriptions = 0;
  let liveEvents = true;

  beforeAll(async () => {
    // The real engine and store, seen from a second HTTP app: its subscribe
    // counts subscriptions, and can withhold events the way a process that
    // does not run the deploy never sees them.
    const engine: EngineApi = Object.create(t.engine);
    engine.subscribe = (deployId: number, listener: (event: DeployEvent) => void) => {
      subscriptions++;
      const off = liveEvents ? t.engine.subscribe(deployId, listener) : () => undefined;
      return () => {
        subscriptions--;
        off();
      };
    };
    app = await buildHttpApp(
      { engine, store: t.store, settings: { bodyLimit: 1024 * 1024 }, version: "test" },
      { sseTiming: { pollMs: 100, heartbeatMs: 100 } },
    );
    await app.listen({ port: 0, host: "127.0.0.1" });
    url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    await app?.close();
  });

  it("without in-process events the poll still delivers every byte once, with heartbeats", async () => {
    liveEvents = false;
    try {
      const id = await startDeploy("staging");
      const result = await followLog(`${url}/api/v1/deploys/${id}/log`, t.adminToken);
      expect(result.endedByServer).toBe(true);
      expect(logText(result.events)).toBe(await storedLog(id));
      expect(result.comments.some((c) => c.includes("keep-alive"))).toBe(true);
    } finally {
      liveEvents = true;
    }
  });

  it("a client hanging up ends its subscription", async () => {
    const id = await startDeploy("staging");
    const result = await followLog(`${url}/api/v1/deploys/${id}/log`, t.adminToken, {
      stopWhen: (events) => events.some((e) => e.event === "log"),
    });
    expect(result.endedByServer).toBe(false);
    await until(() => subscriptions === 0, 5000, "subscription released");
    await t.waitForDeploy(id);
  });

  it("closing the server ends open streams instead of waiting for them", async () => {
    const id = await startDeploy("staging");
    const following = followLog(`${url}/api/v1/deploys/${id}/log`, t.adminToken);
    await until(() => subscriptions === 1, 5000, "stream open");
    const started = Date.now();
    await app.close();
    expect(Date.now() - started).toBeLessThan(2000);
    const result = await following;
    expect(result.endedByServer).toBe(true);
    expect(result.events.some((e) => e.event === "end")).toBe(false);
    expect(subscriptions).toBe(0);
    await t.waitForDeploy(id);
  });
});
