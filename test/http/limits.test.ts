// biome-ignore-all lint/suspicious/noExplicitAny: API responses are untyped JSON in these tests
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WebSocket } from "ws";
import { AGENT_CONNECT_PATH, PROTOCOL_VERSION } from "../../src/agent/protocol.js";
import { makeTree, realTar, tempDir } from "../artifacts/helpers.js";
import { openSocket, parseResponse, rawRequest, readUntilClosed } from "../helpers/raw-http.js";
import { startTurnout, type TestTurnout } from "../helpers/turnout.js";
import { followLog } from "./sse-client.js";

/**
 * The server's limits against clients that stall: headers, bodies, idle
 * keep-alive connections and the connection cap, all set short here through
 * the same environment variables an operator would use. Long-lived streams
 * (log followers, agents) must outlive every one of them.
 *
 * Waits are bounds for correctness (the connection is closed at all, well
 * before the bound), never measurements: without the limits the connections
 * here stay open for minutes.
 */
const SHORT = "1s";
const BOUND_MS = 10_000;

const MANIFEST = `repo: "{repo}"
environments:
  staging:
    branch: main
    deploy:
      provider: shell
      script: |
        echo "start"
        sleep 3
        echo "done"
      timeout: 2m
`;

let t: TestTurnout;

beforeAll(async () => {
  t = await startTurnout({
    manifest: MANIFEST,
    environment: {
      TURNOUT_HEADERS_TIMEOUT: SHORT,
      TURNOUT_BODY_TIMEOUT: SHORT,
      TURNOUT_KEEP_ALIVE_TIMEOUT: SHORT,
      TURNOUT_UPLOAD_MIN_RATE: "4096",
    },
  });
  await t.writeManifest(
    "pushed",
    'hosted: true\nenvironments:\n  staging:\n    deploy:\n      provider: shell\n      command: ["true"]\n',
  );
});

afterAll(async () => {
  await t?.stop();
});

const auth = () => `Authorization: Bearer ${t.adminToken}\r\n`;

describe("stalled clients are cut off", () => {
  it("the settings come from the environment", () => {
    expect(t.settings).toMatchObject({
      headersTimeoutMs: 1000,
      bodyTimeoutMs: 1000,
      keepAliveTimeoutMs: 1000,
      uploadMinRate: 4096,
    });
  });

  it("headers, then a stalled JSON body: 408 E_REQUEST_TIMEOUT and the connection is closed", async () => {
    const socket = await openSocket(t.url);
    const answer = readUntilClosed(socket, BOUND_MS);
    socket.write(
      `PUT /api/v1/apps/shop/environments/staging/lock HTTP/1.1\r\nHost: x\r\n${auth()}Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"reason": "sta`,
    );
    const { text, closed } = await answer;
    expect(closed).toBe(true);
    const res = parseResponse(text);
    expect(res?.status).toBe(408);
    expect(res?.json).toMatchObject({ error: { code: "E_REQUEST_TIMEOUT" } });
    expect(res?.headers["connection"]).toBe("close");
    expect(await t.store.locks.get("shop", "staging")).toBeUndefined();
  });

  it("a request answered before its body was read (401), whose body then stalls: the connection is closed", async () => {
    const socket = await openSocket(t.url);
    const answer = readUntilClosed(socket, BOUND_MS);
    socket.write(
      "PUT /api/v1/apps/shop/environments/staging/lock HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tnt_wrong\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{",
    );
    // Trickled more slowly than any body may arrive, but often enough that nothing else would close it.
    const trickle = setInterval(() => socket.write(" "), 200);
    try {
      const { text, closed } = await answer;
      expect(parseResponse(text)?.status).toBe(401);
      expect(closed).toBe(true);
    } finally {
      clearInterval(trickle);
    }
  });

  it.each([
    [
      "an API request",
      () => `PUT /api/v1/apps/shop/environments/staging/lock HTTP/1.1\r\nHost: x\r\n${auth()}`,
    ],
    ["a webhook from anyone", () => "POST /api/v1/webhooks/gitlab HTTP/1.1\r\nHost: x\r\n"],
  ])(
    "%s over the size limit, answered 413 while its client stalls: the server carries on",
    async (_, head) => {
      const socket = await openSocket(t.url);
      const answer = readUntilClosed(socket, BOUND_MS);
      socket.write(`${head()}Content-Type: application/json\r\nContent-Length: 8000000\r\n\r\n{"reason": "`);
      socket.write("x".repeat(3_000_000));
      const { text, closed } = await answer;
      expect(parseResponse(text)?.status).toBe(413);
      expect(closed).toBe(true);
      // Past the body timeout: a body no one reads any more must not take the server down.
      await new Promise((resolve) => setTimeout(resolve, 1500));
      expect((await t.api("GET", "/api/v1/apps")).status).toBe(200);
    },
  );

  it("headers that never end: 408 E_REQUEST_TIMEOUT and the connection is closed", async () => {
    const socket = await openSocket(t.url);
    const answer = readUntilClosed(socket, BOUND_MS);
    socket.write(`GET /api/v1/apps HTTP/1.1\r\nHost: x\r\n${auth()}`);
    const { text, closed } = await answer;
    expect(closed).toBe(true);
    const res = parseResponse(text);
    expect(res?.status).toBe(408);
    expect(res?.json).toMatchObject({ error: { code: "E_REQUEST_TIMEOUT" } });
  });

  it("an idle keep-alive connection is closed after the keep-alive timeout", async () => {
    const socket = await openSocket(t.url);
    const answer = readUntilClosed(socket, BOUND_MS);
    socket.write(`GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n`);
    const { text, closed } = await answer;
    expect(parseResponse(text)?.status).toBe(200);
    expect(closed).toBe(true);
  });

  it("an upload that stops moving is cut off; one that keeps moving may take longer than the body timeout", async () => {
    // Stalled after a few bytes.
    const stalled = await openSocket(t.url);
    const answer = readUntilClosed(stalled, BOUND_MS);
    stalled.write(
      `POST /api/v1/apps/shop/artifacts HTTP/1.1\r\nHost: x\r\n${auth()}Content-Type: application/x-tar\r\nContent-Length: 100000\r\n\r\n`,
    );
    stalled.write(Buffer.alloc(512));
    const { text, closed } = await answer;
    expect(closed).toBe(true);
    expect(parseResponse(text)).toMatchObject({
      status: 408,
      json: { error: { code: "E_REQUEST_TIMEOUT" } },
    });

    // Moving steadily (about 40 KiB/s, above the 4 KiB/s minimum) for about three body timeouts.
    const scratch = await tempDir("limits-upload");
    try {
      await makeTree(path.join(scratch.dir, "tree"), { "big.txt": "0123456789abcdef".repeat(8 * 1024) });
      const archive = await realTar(path.join(scratch.dir, "tree"), false);
      const socket = await openSocket(t.url);
      const done = readUntilClosed(socket, 30_000);
      socket.write(
        `POST /api/v1/apps/shop/artifacts HTTP/1.1\r\nHost: x\r\n${auth()}Content-Type: application/x-tar\r\nContent-Length: ${archive.length}\r\nConnection: close\r\n\r\n`,
      );
      const started = Date.now();
      for (let at = 0; at < archive.length; at += 4096) {
        socket.write(archive.subarray(at, at + 4096));
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      const res = parseResponse((await done).text);
      expect(Date.now() - started).toBeGreaterThan(2000);
      expect(res?.status, res?.body).toBe(201);
    } finally {
      await scratch.cleanup();
    }
  });

  it("a git push that stops moving is cut off (the connection is closed)", async () => {
    const socket = await openSocket(t.url);
    const answer = readUntilClosed(socket, BOUND_MS);
    socket.write(
      `POST /git/pushed.git/git-receive-pack HTTP/1.1\r\nHost: x\r\n${auth()}Content-Type: application/x-git-receive-pack-request\r\nContent-Length: 100000\r\n\r\n`,
    );
    // The start of a command line git waits to read the rest of.
    socket.write(`0098${"0".repeat(40)}`);
    // git http-backend has already sent its headers: the connection is cut, the answer left unfinished.
    const { text, closed } = await answer;
    expect(closed).toBe(true);
    expect(text).not.toMatch(/\r\n0\r\n\r\n$/);
  });
});

describe("long-lived streams outlive every limit", () => {
  it("a log stream with nothing to say for longer than the timeouts is not cut", async () => {
    const res = await t.api("POST", "/api/v1/apps/shop/environments/staging/deploys", {});
    expect(res.status).toBe(202);
    const result = await followLog(`${t.url}/api/v1/deploys/${res.body.deploy.id}/log`, t.adminToken);
    expect(result.endedByServer).toBe(true);
    const text = result.events
      .filter((e) => e.event === "log")
      .map((e) => JSON.parse(e.data).text)
      .join("");
    expect(text).toContain("start");
    expect(text).toContain("done");
    expect(result.events.at(-1)?.event).toBe("end");
  });

  it("an agent connection stays up past them", async () => {
    const enroll = (await t.api("POST", "/api/v1/tokens", { name: "limits-enroll", role: "agent" })).body
      .token;
    const socket = new WebSocket(`${t.url.replace("http", "ws")}${AGENT_CONNECT_PATH}`, {
      headers: { authorization: `Bearer ${enroll}` },
    });
    const closed = new Promise<number>((resolve) => socket.on("close", (code) => resolve(code)));
    const messages: any[] = [];
    socket.on("message", (data) => messages.push(JSON.parse(String(data))));
    await new Promise((resolve, reject) => {
      socket.once("open", resolve);
      socket.once("error", reject);
    });
    socket.send(
      JSON.stringify({
        type: "hello",
        protocol: PROTOCOL_VERSION,
        name: "limits-host",
        labels: {},
        version: "test",
        inventory: [],
      }),
    );
    // Quiet for three times every limit.
    await new Promise((resolve) => setTimeout(resolve, 3_500));
    expect(socket.readyState).toBe(WebSocket.OPEN);
    expect(messages.some((m) => m.type === "welcome")).toBe(true);
    socket.close(1000);
    expect(await closed).toBe(1000);
  });
});

describe("the connection cap", () => {
  let capped: TestTurnout;

  beforeAll(async () => {
    capped = await startTurnout({ environment: { TURNOUT_MAX_CONNECTIONS: "2" } });
  });

  afterAll(async () => {
    await capped?.stop();
  });

  it("connections beyond the cap are closed at once, without an answer; others are served", async () => {
    const open = [await openSocket(capped.url), await openSocket(capped.url)];
    // Each is surely accepted: it got an answer and stays open (keep-alive).
    for (const socket of open) {
      const answered = new Promise<string>((resolve) =>
        socket.once("data", (d: Buffer) => resolve(d.toString())),
      );
      socket.write("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
      expect(parseResponse(await answered)?.status).toBe(200);
    }
    const third = await openSocket(capped.url);
    const refused = readUntilClosed(third, BOUND_MS);
    third.write("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    expect(await refused).toEqual({ text: "", closed: true });

    open[0]!.destroy();
    await new Promise((resolve) => setTimeout(resolve, 200));
    const again = await rawRequest(
      capped.url,
      "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    expect(again.status).toBe(200);
    open[1]!.destroy();
  });
});
