import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WebSocket } from "ws";
import {
  AGENT_CONNECT_PATH,
  CLOSE,
  MIN_PROTOCOL_VERSION,
  PROTOCOL_VERSION,
} from "../../src/agent/protocol.js";
import type { HostJson } from "../../src/cli/commands/hosts.js";
import { hostsTable } from "../../src/cli/commands/hosts.js";
import type { AgentChange } from "../../src/providers/fleet/agent-hub.js";
import { AgentHub } from "../../src/providers/fleet/agent-hub.js";
import { startTurnout, type TestTurnout } from "../helpers/turnout.js";
import { until } from "../helpers/wait.js";

/**
 * The server side of agents, driven by a scripted client speaking the
 * protocol over a real WebSocket: authentication before the upgrade, hello
 * and welcome, host tokens, replacement, inventories, calls and their
 * failures, and the hosts API.
 */
let t: TestTurnout;
let enroll: string;

beforeAll(async () => {
  t = await startTurnout();
  enroll = (
    await t.api("POST", "/api/v1/tokens", { name: "enroll", role: "agent", labels: ["role=web", "zone=b"] })
  ).body.token;
});

afterAll(async () => {
  await t.stop();
});

interface Fake {
  socket: WebSocket;
  messages: any[];
  closed: Promise<{ code: number; reason: string }>;
  send(message: unknown): void;
  next(type: string): Promise<any>;
}

/** Opens a socket; resolves with the HTTP status when the upgrade is refused. */
function open(token: string | undefined): Promise<Fake | { status: number; body: any }> {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(`${t.url.replace("http", "ws")}${AGENT_CONNECT_PATH}`, {
      headers: token ? { authorization: `Bearer ${token}` } : {},
    });
    const messages: any[] = [];
    const closed = new Promise<{ code: number; reason: string }>((done) =>
      socket.on("close", (code, reason) => done({ code, reason: reason.toString() })),
    );
    socket.on("message", (data) => messages.push(JSON.parse(String(data))));
    socket.on("unexpected-response", (request, response) => {
      let text = "";
      response.on("data", (chunk) => {
        text += chunk;
      });
      response.on("end", () => {
        request.destroy();
        resolve({ status: response.statusCode!, body: text ? JSON.parse(text) : undefined });
      });
    });
    socket.on("error", () => undefined);
    socket.on("open", () =>
      resolve({
        socket,
        messages,
        closed,
        send: (message) => socket.send(JSON.stringify(message)),
        async next(type) {
          let found: any;
          await until(
            () => {
              const index = messages.findIndex((m) => m.type === type);
              if (index >= 0) found = messages.splice(index, 1)[0];
              return index >= 0;
            },
            5_000,
            `a ${type} message`,
          );
          return found;
        },
      }),
    );
    setTimeout(() => reject(new Error("no answer to the upgrade")), 5_000);
  });
}

async function connect(token: string): Promise<Fake> {
  const fake = await open(token);
  if (!("socket" in fake)) throw new Error(`refused: ${fake.status}`);
  return fake;
}

function hello(name: string, extra: Record<string, unknown> = {}) {
  return {
    type: "hello",
    protocol: PROTOCOL_VERSION,
    name,
    labels: { role: "web" },
    version: "test",
    inventory: [],
    ...extra,
  };
}

async function enrolled(name: string, labels: Record<string, string> = { role: "web" }) {
  const fake = await connect(enroll);
  fake.send(hello(name, { labels }));
  const welcome = await fake.next("welcome");
  return { fake, welcome };
}

describe("agent connect endpoint", () => {
  it("negotiates the protocol: too old or too new is refused with a close code and what to upgrade", async () => {
    // A fake agent older than any protocol the server accepts.
    const old = await connect(enroll);
    old.send(hello("old-1", { protocol: MIN_PROTOCOL_VERSION - 1 }));
    const refused = await old.closed;
    expect(refused.code).toBe(CLOSE.unsupportedProtocol);
    expect(refused.reason).toMatch(
      new RegExp(
        `^agent protocol 0 is too old for this server \\(protocol 1-${PROTOCOL_VERSION}\\): upgrade the agent to turnout \\S+$`,
      ),
    );
    expect(old.messages.filter((m) => m.type === "welcome")).toEqual([]);
    expect(await t.store.hosts.get("old-1")).toBeUndefined();

    // One that no longer speaks anything this server speaks.
    const future = await connect(enroll);
    future.send(hello("future-1", { protocol: PROTOCOL_VERSION + 2, minProtocol: PROTOCOL_VERSION + 1 }));
    const tooNew = await future.closed;
    expect(tooNew.code).toBe(CLOSE.unsupportedProtocol);
    expect(tooNew.reason).toMatch(/is newer than this server .*: upgrade the server first$/);

    // Protocol 1 agents are still served, with a welcome they can read (no fields they do not know).
    const v1 = await connect(enroll);
    v1.send(hello("v1-1", { protocol: 1 }));
    const welcome1 = await v1.next("welcome");
    expect(Object.keys(welcome1).sort()).toEqual(["hostId", "hostToken", "type"]);
    v1.socket.close();

    // A newer agent that still speaks this server's protocol gets it, and says so back.
    const newer = await connect(enroll);
    newer.send(
      hello("newer-1", { protocol: PROTOCOL_VERSION + 1, minProtocol: 1, manifests: ["a".repeat(64)] }),
    );
    expect(await newer.next("welcome")).toMatchObject({ type: "welcome", protocol: PROTOCOL_VERSION });
    newer.socket.close();

    // Kept-manifest lists are bounded like everything else an agent says.
    const many = await connect(enroll);
    many.send(
      hello("many-1", { manifests: Array.from({ length: 17 }, (_, i) => i.toString(16).padStart(64, "0")) }),
    );
    expect((await many.closed).code).toBe(CLOSE.protocolError);
  });

  it("refuses bad tokens with an HTTP status before upgrading", async () => {
    expect(await open(undefined)).toMatchObject({ status: 401, body: { error: { code: "E_UNAUTHORIZED" } } });
    expect(await open("tnt_nope")).toMatchObject({ status: 401 });
    expect(await open("tnh_nope")).toMatchObject({ status: 401 });
    const viewer = (await t.api("POST", "/api/v1/tokens", { name: "viewer", role: "viewer" })).body.token;
    expect(await open(viewer)).toMatchObject({ status: 403, body: { error: { code: "E_FORBIDDEN" } } });
    // Admin tokens carry `agent` too.
    const admin = await connect(t.adminToken);
    admin.socket.close();

    const plain = await fetch(`${t.url}${AGENT_CONNECT_PATH}`);
    expect(plain.status).toBe(426);
  });

  it("closes sockets that do not follow the protocol", async () => {
    const notJson = await connect(enroll);
    notJson.socket.send("hello?");
    expect(await notJson.closed).toMatchObject({ code: 4003, reason: "message is not JSON" });

    const noHello = await connect(enroll);
    noHello.send({ type: "heartbeat" });
    expect((await noHello.closed).code).toBe(4003);

    const badName = await connect(enroll);
    badName.send(hello("Not_A_Name"));
    expect(await badName.closed).toMatchObject({
      code: 4001,
      reason: expect.stringMatching(/invalid host name/),
    });

    const badLabel = await connect(enroll);
    badLabel.send(hello("lbl", { labels: { "bad key": "x" } }));
    expect((await badLabel.closed).code).toBe(4003);

    const badInventory = await connect(enroll);
    badInventory.send(
      hello("inv", { inventory: [{ app: "../etc", releases: [], current: null, slots: {} }] }),
    );
    expect((await badInventory.closed).code).toBe(4003);

    t.server.agents.timing.helloTimeoutMs = 300;
    try {
      const silent = await connect(enroll);
      expect(await silent.closed).toMatchObject({ code: 4008, reason: "no hello" });
    } finally {
      t.server.agents.timing.helloTimeoutMs = 10_000;
    }
    for (const name of ["lbl", "inv", "not-a-name"]) expect(await t.store.hosts.get(name)).toBeUndefined();
  });

  it("issues a host token once, accepts it for that host only, and replaces a second connection", async () => {
    const changes: AgentChange[] = [];
    const unsubscribe = t.server.agents.onChange((c) => changes.push(c));
    const { fake: first, welcome } = await enrolled("web-7");
    expect(welcome).toMatchObject({ type: "welcome", hostId: expect.any(Number) });
    expect(welcome.hostToken).toMatch(/^tnh_/);
    const row = await t.store.hosts.get("web-7");
    expect(row).toMatchObject({ kind: "agent", connected: true, labels: { role: "web" } });

    // The host token: no new token issued, labels updated, the first socket replaced.
    const second = await connect(welcome.hostToken);
    second.send(hello("web-7", { labels: { role: "web", zone: "b" } }));
    const again = await second.next("welcome");
    expect(again.hostToken).toBeUndefined();
    expect(again.hostId).toBe(welcome.hostId);
    expect(await first.closed).toMatchObject({ code: 4002 });
    await new Promise((r) => setTimeout(r, 100));
    expect(t.server.agents.isConnected("web-7")).toBe(true);
    expect(await t.store.hosts.get("web-7")).toMatchObject({ connected: true, labels: { zone: "b" } });

    // Another host's name with this token: refused.
    const impostor = await connect(welcome.hostToken);
    impostor.send(hello("db-1"));
    expect(await impostor.closed).toMatchObject({
      code: 4001,
      reason: expect.stringMatching(/belongs to host 'web-7'/),
    });

    second.socket.close();
    await until(async () => (await t.store.hosts.get("web-7"))?.connected === false, 5_000, "disconnected");
    await until(() => changes.some((c) => c.type === "disconnected"), 2_000, "disconnect event");
    unsubscribe();
    expect(changes.map((c) => `${c.type}:${c.host}`)).toEqual([
      "connected:web-7",
      "connected:web-7",
      "disconnected:web-7",
    ]);
  });

  it("lets a host's downloads in without looking up its token only while this server waits for it to stage", async () => {
    const { fake, welcome } = await enrolled("stager-1");
    const connection = t.server.agents.connection("stager-1")!;
    const artifact = "ab".repeat(32);
    const selectHosts = () => t.store.queriesByKind().get("select hosts") ?? 0;
    const manifestOf = (token: string) =>
      t.api("GET", `/api/v1/artifacts/${artifact}/manifest`, undefined, token);

    // Not staging: the token is looked up (and the artifact, never sent to this host, is not found).
    let before = selectHosts();
    expect((await manifestOf(welcome.hostToken)).status).toBe(404);
    expect(selectHosts() - before).toBe(1);

    // A stage call waits for the host: its downloads are let in on the connection's token alone.
    const staged = connection.call(
      "stage",
      {
        spec: {
          app: "shop",
          releaseId: "r1",
          artifact,
          manifest: { version: 1, entries: [] },
          shared: [],
          env: {},
          timeoutMs: 5_000,
        },
      } as never,
      { timeoutMs: 5_000, cancelGraceMs: 100 },
    );
    const call = await fake.next("call");
    before = selectHosts();
    const during = await manifestOf(welcome.hostToken);
    expect(selectHosts() - before).toBe(0);
    // Let in: past the token, to the artifact itself (which this test never stored).
    expect(during.status).toBe(404);
    expect(during.body.error.message).toContain(artifact);
    // Another token is still looked up, and a wrong one refused, while the call waits.
    before = selectHosts();
    expect((await manifestOf(`${welcome.hostToken.slice(0, -4)}AAAA`)).status).toBe(401);
    expect(selectHosts() - before).toBe(1);

    // The call answered: the look-up is back.
    fake.send({
      type: "result",
      id: call.id,
      ok: true,
      result: { staged: true, blobsFetched: 0, bytesFetched: 0 },
    });
    await staged;
    before = selectHosts();
    expect((await manifestOf(welcome.hostToken)).status).toBe(404);
    expect(selectHosts() - before).toBe(1);
    fake.socket.close();
  });

  it("keeps host_apps in step with reported inventories", async () => {
    const { fake } = await enrolled("web-8");
    const inventory = [
      {
        app: "shop",
        releases: ["aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb"],
        current: "bbbbbbbbbbbbbbbb",
        slots: { blue: "aaaaaaaaaaaaaaaa" },
      },
      { app: "api", releases: ["cccccccccccccccc"], current: "cccccccccccccccc", slots: {} },
    ];
    fake.send({ type: "heartbeat", inventory });
    await until(async () => (await t.store.hosts.get("web-8"))?.apps.length === 2, 5_000, "inventory saved");
    fake.send({ type: "heartbeat", inventory: [inventory[0]] });
    await until(async () => (await t.store.hosts.get("web-8"))?.apps.length === 1, 5_000, "api dropped");

    const shown = await t.api("GET", "/api/v1/hosts/web-8");
    expect(shown.status).toBe(200);
    expect(shown.body.host).toEqual({
      id: expect.any(Number),
      name: "web-8",
      kind: "agent",
      labels: { role: "web" },
      ungrantedLabels: {},
      grant: { apps: null, labels: ["role=web", "zone=b"] },
      unrestricted: false,
      app: null,
      address: null,
      poolState: "pooled",
      depooledApps: [],
      connected: true,
      lastSeenAt: expect.any(String),
      // Enrolled with an enrollment token: its new host token has not been used yet.
      tokenLastUsedAt: null,
      apps: [
        {
          app: "shop",
          current: "bbbbbbbbbbbbbbbb",
          slots: { blue: "aaaaaaaaaaaaaaaa" },
          releases: inventory[0]!.releases,
        },
      ],
    });

    // A token limited to other apps: the host serves none of them, so it is not there for it.
    const limited = (
      await t.api("POST", "/api/v1/tokens", { name: "api-only", role: "viewer", apps: ["api"] })
    ).body.token;
    const seen = await t.api("GET", "/api/v1/hosts/web-8", undefined, limited);
    expect(seen).toMatchObject({ status: 404, body: { error: { code: "E_NOT_FOUND" } } });
    fake.socket.close();
  });

  it("takes what an operation changed on the host from its result (protocol 4), before the call resolves", async () => {
    const { fake } = await enrolled("web-9");
    const connection = t.server.agents.connection("web-9")!;
    const answer = connection.call(
      "prune",
      { app: "shop", keep: 1 },
      { timeoutMs: 5000, cancelGraceMs: 100 },
    );
    const call = await fake.next("call");
    const inventory = [
      { app: "shop", releases: ["bbbbbbbbbbbbbbbb"], current: "bbbbbbbbbbbbbbbb", slots: {} },
    ];
    const kept = ["d".repeat(64)];
    fake.send({
      type: "result",
      id: call.id,
      ok: true,
      result: { removed: ["aaaaaaaaaaaaaaaa"] },
      inventory,
      manifests: kept,
    });
    await expect(answer).resolves.toEqual({ removed: ["aaaaaaaaaaaaaaaa"] });
    // Known to this server as soon as the caller goes on (the next stage's difference is made from it).
    expect(connection.inventory).toEqual(inventory);
    expect(connection.manifests).toEqual(kept);
    // And recorded, with no heartbeat sent.
    await until(
      async () => (await t.store.hosts.get("web-9"))?.apps[0]?.current === "bbbbbbbbbbbbbbbb",
      5_000,
      "saved",
    );
    fake.socket.close();
  });

  it("routes calls and their answers, and fails them on errors, timeouts, cancels and disconnects", async () => {
    const { fake } = await enrolled("web-9");
    const ops = t.server.agents.opsFor("web-9")!;
    const logs: string[] = [];
    const signal = new AbortController().signal;

    const switched = ops.switchTo("shop", "aaaaaaaaaaaaaaaa", "current");
    const call = await fake.next("call");
    expect(call).toEqual({
      type: "call",
      id: expect.any(Number),
      op: "switchTo",
      args: { app: "shop", releaseId: "aaaaaaaaaaaaaaaa", slot: "current" },
    });
    fake.send({ type: "result", id: call.id, ok: true, result: { previous: null } });
    expect(await switched).toEqual({ previous: null });

    const ran = ops.run("shop", ["echo", "hi"], {}, 10_000, (line) => logs.push(line), signal);
    const runCall = await fake.next("call");
    fake.send({ type: "log", id: runCall.id, line: "hi" });
    fake.send({ type: "result", id: runCall.id, ok: true, result: { exitCode: 3 } });
    expect(await ran).toBe(3);
    expect(logs).toEqual(["hi"]);

    const failed = ops.prune("shop", 5);
    const pruneCall = await fake.next("call");
    fake.send({
      type: "result",
      id: pruneCall.id,
      ok: false,
      error: { code: "E_CONFLICT", message: "busy" },
    });
    await expect(failed).rejects.toMatchObject({ code: "E_CONFLICT", message: "host web-9: busy" });

    const malformed = ops.inventory();
    const inventoryCall = await fake.next("call");
    fake.send({ type: "result", id: inventoryCall.id, ok: true, result: { inventory: "lots" } });
    await expect(malformed).rejects.toMatchObject({ code: "E_INTERNAL" });

    // Cancelled: the agent is told, and its answer settles the call.
    const controller = new AbortController();
    const cancelled = ops.health(
      "shop",
      { http: "http://127.0.0.1:1/", retries: 0, intervalMs: 0, timeoutMs: 1000 },
      () => undefined,
      controller.signal,
    );
    const healthCall = await fake.next("call");
    controller.abort();
    expect(await fake.next("cancel")).toEqual({ type: "cancel", id: healthCall.id });
    fake.send({
      type: "result",
      id: healthCall.id,
      ok: false,
      error: { code: "E_UNAVAILABLE", message: "aborted" },
    });
    await expect(cancelled).rejects.toMatchObject({ code: "E_UNAVAILABLE" });

    // No answer in time: E_UNAVAILABLE, and the agent is told to stop.
    t.server.agents.timing.callTimeoutMs = 300;
    try {
      const slow = ops.promoteSlot("shop", "blue");
      const slowCall = await fake.next("call");
      await expect(slow).rejects.toMatchObject({
        code: "E_UNAVAILABLE",
        message: expect.stringMatching(/timed out/),
      });
      expect(await fake.next("cancel")).toEqual({ type: "cancel", id: slowCall.id });
    } finally {
      t.server.agents.timing.callTimeoutMs = 120_000;
    }

    // The socket goes mid-call.
    const pending = ops.inventory();
    await fake.next("call");
    fake.socket.terminate();
    await expect(pending).rejects.toMatchObject({
      code: "E_UNAVAILABLE",
      message: expect.stringMatching(/^host web-9 disconnected/),
    });
    await expect(ops.inventory()).rejects.toMatchObject({
      code: "E_UNAVAILABLE",
      message: "host web-9 is not connected",
    });
  });
});

describe("hosts API", () => {
  it("lists hosts for readers only", async () => {
    const listed = await t.api("GET", "/api/v1/hosts");
    expect(listed.status).toBe(200);
    expect(listed.body.hosts.map((h: any) => h.name)).toEqual(expect.arrayContaining(["web-7", "web-8"]));
    expect(await t.api("GET", "/api/v1/hosts", undefined, enroll)).toMatchObject({ status: 403 });
    expect(await t.api("GET", "/api/v1/hosts/web-7", undefined, enroll)).toMatchObject({ status: 403 });
    expect(await t.api("GET", "/api/v1/hosts/nowhere")).toMatchObject({ status: 404 });
    expect(await t.api("GET", "/api/v1/hosts/..%2Fetc")).toMatchObject({ status: 422 });
  });

  it("marks hosts a dead server left connected as disconnected at start", async () => {
    await t.store.hosts.enrollAgent({
      name: "orphan",
      labels: {},
      owner: "gone:99999999:abcdef",
      tokenHash: null,
      grant: null,
    });
    expect((await t.store.hosts.get("orphan"))?.connected).toBe(true);
    // A crashed server leaves rows like this one; the next server to start corrects them.
    const hub = new AgentHub({ store: t.store, owner: "test:1:000000" });
    await hub.start(() => true);
    expect((await t.store.hosts.get("orphan"))?.connected).toBe(false);
    await hub.close();
  });
});

describe("grants: the server decides what a host may receive", () => {
  const token = async (name: string, body: Record<string, unknown>) => {
    const res = await t.api("POST", "/api/v1/tokens", { name, role: "agent", ...body });
    expect(res.status, JSON.stringify(res.body)).toBe(201);
    return res.body as { token: string; info: any };
  };

  it("agent tokens grant apps and labels: none unless given, `null` flagged as unrestricted", async () => {
    expect((await token("g-none", {})).info).toMatchObject({ apps: null, labels: [], unrestricted: false });
    expect(
      (await token("g-web", { apps: ["shop"], labels: ["role=web", "env=prod", "role=web"] })).info,
    ).toMatchObject({
      apps: ["shop"],
      labels: ["env=prod", "role=web"],
      unrestricted: false,
    });
    expect((await token("g-any", { labels: null })).info).toMatchObject({ labels: null, unrestricted: true });
    const listed = (await t.api("GET", "/api/v1/tokens")).body.tokens;
    expect(listed.find((x: any) => x.name === "g-any")).toMatchObject({ unrestricted: true });
    expect(listed.find((x: any) => x.name === "enroll")).toMatchObject({ unrestricted: false });
    // Labels are for agent tokens only, and follow the label rules.
    const viewer = await t.api("POST", "/api/v1/tokens", {
      name: "g-viewer",
      role: "viewer",
      labels: ["a=b"],
    });
    expect(viewer).toMatchObject({ status: 400, body: { error: { code: "E_VALIDATION" } } });
    const bad = await t.api("POST", "/api/v1/tokens", {
      name: "g-bad",
      role: "agent",
      labels: ["no equals"],
    });
    expect(bad).toMatchObject({ status: 400, body: { error: { code: "E_VALIDATION" } } });
  });

  it("labels a host declares beyond its token's grant count for nothing, and are shown as ignored", async () => {
    const { token: shopWeb } = await token("shop-web", { apps: ["shop"], labels: ["role=web"] });
    const fake = await connect(shopWeb);
    fake.send(hello("g-1", { labels: { role: "web", tier: "payments", env: "prod" } }));
    await fake.next("welcome");
    const shown = (await t.api("GET", "/api/v1/hosts/g-1")).body.host;
    expect(shown).toMatchObject({
      labels: { role: "web" },
      ungrantedLabels: { tier: "payments", env: "prod" },
      grant: { apps: ["shop"], labels: ["role=web"] },
      unrestricted: false,
    });
    fake.socket.close();
  });

  it("another enrollment token cannot take over a host it does not cover; the host's own token still works", async () => {
    const { token: shopWeb } = await token("shop-web-2", { apps: ["shop"], labels: ["role=web"] });
    const { token: blogWeb } = await token("blog-web", { apps: ["blog"], labels: ["role=web"] });
    const first = await connect(shopWeb);
    first.send(hello("g-2"));
    const { hostToken } = await first.next("welcome");
    first.socket.close();
    await until(async () => !t.server.agents.isConnected("g-2"), 5_000, "g-2 gone");

    const thief = await connect(blogWeb);
    thief.send(hello("g-2"));
    expect(await thief.closed).toMatchObject({
      code: 4001,
      reason: expect.stringMatching(/grant this token does not cover/),
    });
    expect((await t.store.hosts.get("g-2"))?.grant).toEqual({ apps: ["shop"], labels: ["role=web"] });
    const back = await connect(hostToken);
    back.send(hello("g-2"));
    expect((await back.next("welcome")).hostToken).toBeUndefined();
    back.socket.close();
  });

  it("an admin of every app changes a host's grant; nobody else may", async () => {
    const { token: shopWeb } = await token("shop-web-3", { apps: ["shop"], labels: ["role=web"] });
    const fake = await connect(shopWeb);
    fake.send(hello("g-3", { labels: { role: "web", tier: "payments" } }));
    await fake.next("welcome");
    const body = { apps: ["shop", "blog"], labels: ["role=web", "tier=payments"] };

    const viewer = (await t.api("POST", "/api/v1/tokens", { name: "g-reader", role: "viewer" })).body.token;
    const scopedAdmin = (
      await t.api("POST", "/api/v1/tokens", { name: "g-shop-admin", role: "admin", apps: ["shop"] })
    ).body.token;
    for (const caller of [viewer, scopedAdmin, shopWeb]) {
      expect((await t.api("PUT", "/api/v1/hosts/g-3/grant", body, caller)).status).toBe(403);
    }
    expect((await t.api("PUT", "/api/v1/hosts/nowhere/grant", body)).status).toBe(404);
    expect(
      (await t.api("PUT", "/api/v1/hosts/g-3/grant", { apps: null, labels: ["bad label"] })).status,
    ).toBe(400);
    expect((await t.api("PUT", "/api/v1/hosts/g-3/grant", { apps: null })).status).toBe(400);

    const changed = await t.api("PUT", "/api/v1/hosts/g-3/grant", body);
    expect(changed.status).toBe(200);
    expect(changed.body.host).toMatchObject({
      labels: { role: "web", tier: "payments" },
      ungrantedLabels: {},
      grant: { apps: ["blog", "shop"], labels: ["role=web", "tier=payments"] },
    });
    // A token limited to some apps sees only those of a grant.
    const shopViewer = (
      await t.api("POST", "/api/v1/tokens", { name: "g-shop-reader", role: "viewer", apps: ["shop"] })
    ).body.token;
    expect((await t.api("GET", "/api/v1/hosts/g-3", undefined, shopViewer)).body.host.grant.apps).toEqual([
      "shop",
    ]);

    const unrestricted = await t.api("PUT", "/api/v1/hosts/g-3/grant", { apps: null, labels: null });
    expect(unrestricted.body.host).toMatchObject({ unrestricted: true, grant: { apps: null, labels: null } });
    fake.socket.close();
  });
});

describe("hostsTable", () => {
  const base = {
    id: 1,
    kind: "agent" as const,
    address: null,
    poolState: "pooled" as const,
    depooledApps: [] as string[],
    labels: { role: "web", env: "prod" },
    ungrantedLabels: {},
    grant: { apps: ["shop", "api"], labels: ["env=prod", "role=web"] },
    app: null,
  };
  const hosts: HostJson[] = [
    {
      ...base,
      name: "web-1",
      connected: true,
      lastSeenAt: "2024-05-01T12:03:04.567Z",
      apps: [
        { app: "shop", current: "aaaaaaaaaaaaaaaa", slots: {}, releases: ["aaaaaaaaaaaaaaaa"] },
        { app: "api", current: "bbbbbbbbbbbbbbbb", slots: {}, releases: ["bbbbbbbbbbbbbbbb"] },
      ],
    },
    {
      ...base,
      name: "web-2",
      labels: {},
      ungrantedLabels: { team: "b" },
      grant: { apps: null, labels: null },
      poolState: "depooled" as const,
      depooledApps: ["shop"],
      connected: false,
      lastSeenAt: null,
      apps: [],
    },
  ];

  it("shows state, last seen, pool, labels, ignored labels, grant and app=release pairs", () => {
    expect(hostsTable(hosts)).toBe(
      [
        "NAME   KIND   STATE         LAST SEEN             POOL            LABELS             IGNORED LABELS  GRANT                                   CURRENT",
        "web-1  agent  connected     2024-05-01 12:03:04Z  pooled          env=prod,role=web  -               apps=shop,api labels=env=prod,role=web  shop=aaaaaaaaaaaaaaaa,api=bbbbbbbbbbbbbbbb",
        "web-2  agent  disconnected  -                     depooled: shop  -                  team=b          apps=* labels=* (unrestricted)          -",
      ].join("\n"),
    );
  });

  it("shows one app's current release when given APP", () => {
    const lines = hostsTable(hosts, "api").split("\n");
    expect(lines[1]).toMatch(/ bbbbbbbbbbbbbbbb$/);
    expect(lines[2]).toMatch(/ -$/);
    expect(hostsTable([])).toMatch(/^no hosts/);
    // Every layout of the app on a host: its default place and each deploy path.
    const twoLayouts: HostJson = {
      ...hosts[0]!,
      apps: [
        { app: "shop", current: "aaaaaaaaaaaaaaaa", slots: {}, releases: ["aaaaaaaaaaaaaaaa"] },
        {
          app: "shop",
          path: "/var/www/shop-staging",
          current: "cccccccccccccccc",
          slots: {},
          releases: ["cccccccccccccccc"],
        },
      ],
    };
    expect(hostsTable([twoLayouts], "shop").split("\n")[1]).toMatch(
      / aaaaaaaaaaaaaaaa,\/var\/www\/shop-staging=cccccccccccccccc$/,
    );
    const pathOnly: HostJson = { ...twoLayouts, apps: [twoLayouts.apps[1]!] };
    expect(hostsTable([pathOnly], "shop").split("\n")[1]).toMatch(
      / \/var\/www\/shop-staging=cccccccccccccccc$/,
    );
  });
});
