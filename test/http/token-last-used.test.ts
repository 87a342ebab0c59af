// biome-ignore-all lint/suspicious/noExplicitAny: API responses are untyped JSON in these tests
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WebSocket } from "ws";
import { AGENT_CONNECT_PATH, PROTOCOL_VERSION } from "../../src/agent/protocol.js";
import { startTurnout, type TestTurnout } from "../helpers/turnout.js";

/**
 * Tokens' last use, through the API: recorded when a token authenticates,
 * and not rewritten on every request (the store's tests shorten the interval
 * to see it rewritten after it; see test/store/token-use.test.ts).
 */
let t: TestTurnout;

beforeAll(async () => {
  t = await startTurnout();
});

afterAll(async () => {
  await t?.stop();
});

describe("tokens' last use", () => {
  it("is recorded when a token is used, and not rewritten on every request", async () => {
    const token = (await t.api("POST", "/api/v1/tokens", { name: "used-one", role: "viewer" })).body.token;
    const lastUsed = async () =>
      (await t.api("GET", "/api/v1/tokens")).body.tokens.find((x: any) => x.name === "used-one").lastUsedAt;
    expect(await lastUsed()).toBeNull();
    expect((await t.api("GET", "/api/v1/apps", undefined, token)).status).toBe(200);
    const first = await lastUsed();
    expect(first).toEqual(expect.stringMatching(/^\d{4}-\d\d-\d\dT/));
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect((await t.api("GET", "/api/v1/apps", undefined, token)).status).toBe(200);
    expect(await lastUsed()).toBe(first);
  });

  it("host tokens too: a host's token use shows on the host", async () => {
    const enroll = (await t.api("POST", "/api/v1/tokens", { name: "used-enroll", role: "agent" })).body.token;
    const socket = new WebSocket(`${t.url.replace("http", "ws")}${AGENT_CONNECT_PATH}`, {
      headers: { authorization: `Bearer ${enroll}` },
    });
    const welcome = new Promise<any>((resolve) =>
      socket.on("message", (data) => {
        const message = JSON.parse(String(data));
        if (message.type === "welcome") resolve(message);
      }),
    );
    await new Promise((resolve) => socket.once("open", resolve));
    socket.send(
      JSON.stringify({
        type: "hello",
        protocol: PROTOCOL_VERSION,
        name: "used-host",
        labels: {},
        version: "t",
        inventory: [],
      }),
    );
    const hostToken = (await welcome).hostToken as string;
    expect(hostToken).toMatch(/^tnh_/);
    socket.close();
    const host = async () => (await t.api("GET", "/api/v1/hosts/used-host")).body.host;
    expect((await host()).tokenLastUsedAt).toBeNull();
    const blob = await fetch(`${t.url}/api/v1/blobs/${"e".repeat(64)}?artifact=${"f".repeat(64)}`, {
      headers: { authorization: `Bearer ${hostToken}` },
    });
    expect(blob.status).toBe(404);
    expect((await host()).tokenLastUsedAt).toEqual(expect.stringMatching(/^\d{4}-\d\d-\d\dT/));
  });
});
