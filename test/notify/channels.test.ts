// biome-ignore-all lint/suspicious/noExplicitAny: API responses and payloads are untyped JSON in these tests
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type IrcServer, startIrcServer } from "../helpers/irc-server.js";
import {
  type FakeSlack,
  startFakeSlack,
  startWebhookReceiver,
  type WebhookReceiver,
} from "../helpers/notify-receivers.js";
import { startTurnout, type TestTurnout } from "../helpers/turnout.js";
import { until } from "../helpers/wait.js";

/**
 * The whole server with four channels configured (signed webhook, Slack bot,
 * Slack incoming webhook, IRC), each a loopback stand-in that checks what it
 * receives. Deploys and locks go through the API; the receivers' records are
 * the assertions.
 */
const HOOK_SECRET = "hook-secret-0123456789abcdef";
const SLACK_TOKEN = "xoxb-test-token-secret";
const DEPLOY_EVENTS = ["deploy.queued", "deploy.started", "deploy.succeeded"];

let t: TestTurnout;
let hook: WebhookReceiver;
let slack: FakeSlack;
let irc: IrcServer;

beforeAll(async () => {
  hook = await startWebhookReceiver(HOOK_SECRET);
  slack = await startFakeSlack(SLACK_TOKEN);
  irc = await startIrcServer();
  t = await startTurnout({
    environment: { HOOK_SECRET, SLACK_TOKEN },
    settingsFile: `
notify:
  retry: { base: 50ms, max: 200ms }
  channels:
    audit: { type: webhook, url: "${hook.url}/hook", secret_env: HOOK_SECRET }
    team-slack: { type: slack, token_env: SLACK_TOKEN, channel: "#deploys", api_url: "${slack.apiUrl}" }
    slack-hook: { type: slack, webhook_url: "${slack.webhookUrl}" }
    irc: { type: irc, server: 127.0.0.1, port: ${irc.port}, tls: false, nick: turnout, channel: "#deploys" }
`,
    notify: { idleMs: 50, settleMs: 50 },
    manifest: `repo: "{repo}"
notify:
  - channel: audit
environments:
  staging:
    notify:
      - channel: team-slack
        events: [deploy.*]
      - channel: slack-hook
        events: [deploy.succeeded]
      - channel: irc
        events: [deploy.started, deploy.succeeded, lock.*]
    deploy:
      provider: shell
      command: [bash, deploy.sh, "{env}", "{sha}", "{ref}"]
      timeout: 2m
`,
  });
}, 60_000);

afterAll(async () => {
  await t?.stop();
  await hook?.close();
  await slack?.close();
  await irc?.close();
});

async function deploy(): Promise<number> {
  const res = await t.api("POST", "/api/v1/apps/shop/environments/staging/deploys", {});
  expect(res.status).toBe(202);
  return res.body.deploy.id;
}

describe("notification channels", () => {
  it("a webhook receiver that is down for a while gets every event exactly once, in order per deploy", async () => {
    hook.down = true;
    const ids = [await deploy(), await deploy(), await deploy()];
    for (const id of ids) expect((await t.waitForDeploy(id)).status).toBe("succeeded");
    // It was tried while down, and the deliveries wait with their error recorded.
    await until(() => hook.refusedWhileDown >= 2, 20_000);
    const pending = await t.api("GET", "/api/v1/apps/shop/deliveries?channel=audit&status=pending");
    expect(pending.status).toBe(200);
    expect(pending.body.deliveries.length).toBeGreaterThan(0);
    expect(pending.body.deliveries.some((d: any) => d.lastError === "receiver answered HTTP 503")).toBe(true);
    hook.down = false;

    await until(() => hook.received.filter((p) => ids.includes(p.event.deploy?.id)).length >= 9, 20_000);
    expect(hook.badSignatures).toBe(0);
    for (const id of ids) {
      const kinds = hook.received.filter((p) => p.event.deploy?.id === id).map((p) => p.event.kind);
      expect(kinds).toEqual(DEPLOY_EVENTS);
    }
    const deliveryIds = hook.received.map((p) => p.delivery);
    expect(new Set(deliveryIds).size).toBe(deliveryIds.length);
    // The documented schema: who, what, links.
    const done = hook.received.find((p) => p.event.kind === "deploy.succeeded")!;
    expect(done.schema).toBe(1);
    expect(done.event).toMatchObject({ app: "shop", env: "staging", actor: "turnout" });
    expect(done.event.deploy).toMatchObject({ status: "succeeded", user: "admin", sha: t.repo.head });
    expect(done.links.deploy).toBe(`${t.url}/#/deploys/${done.event.deploy.id}`);

    // The API shows each delivery and its outcome, and never a channel's secret. The outcomes of a
    // round are recorded once all its chains are answered: a moment after the receiver saw the last one.
    const deliveries = () => t.api("GET", `/api/v1/apps/shop/deliveries?channel=audit&deploy=${ids[0]}`);
    await until(
      async () => (await deliveries()).body.deliveries.every((d: any) => d.status === "delivered"),
      10_000,
    );
    const list = await deliveries();
    expect(list.body.deliveries.map((d: any) => [d.kind, d.status])).toEqual(
      [...DEPLOY_EVENTS].reverse().map((k) => [k, "delivered"]),
    );
    expect(list.body.deliveries.some((d: any) => d.attempts > 1)).toBe(true);
    const one = await t.api("GET", `/api/v1/deliveries/${list.body.deliveries[0].id}`);
    expect(one.body.delivery).toMatchObject({ channel: "audit", status: "delivered", deployId: ids[0] });
    const everything = JSON.stringify((await t.api("GET", "/api/v1/apps/shop/deliveries?limit=200")).body);
    expect(everything).not.toContain(HOOK_SECRET);
    expect(everything).not.toContain(SLACK_TOKEN);
  }, 90_000);

  it("Slack: one message per deploy, posted once and updated in place as the deploy moves on", async () => {
    const id = await deploy();
    await t.waitForDeploy(id);
    const label = `shop/staging#${(await t.store.deploys.get(id)).number}`;
    await until(
      () =>
        slack.calls.some(
          (c) => c.method === "chat.update" && c.text.includes(label) && c.text.includes("succeeded"),
        ),
      20_000,
    );
    const mine = slack.calls.filter((c) => c.text.includes(label));
    expect(mine.map((c) => c.method)).toEqual(["chat.postMessage", "chat.update", "chat.update"]);
    const ts = mine.slice(1).map((c) => c.ts);
    expect(new Set(ts).size).toBe(1);
    expect(mine.slice(1).every((c) => c.channel === "C0DEPLOYS")).toBe(true);
    expect(mine.map((c) => c.text.split(" ")[0])).toEqual([":hourglass:", ":rocket:", ":white_check_mark:"]);
    // Who, what, and a link to the deploy's page.
    const blocks = JSON.stringify(mine[2]!.blocks);
    expect(blocks).toContain(`<${t.url}/#/deploys/${id}|${label}>`);
    expect(blocks).toContain("admin (api)");
    expect(blocks).toContain(t.repo.head.slice(0, 7));
    expect(slack.refusedAuth).toBe(0);
    // The incoming webhook cannot edit: it got one post per subscribed event.
    await until(() => slack.hooks.some((h) => h.text.includes(label)), 20_000);
    expect(slack.hooks.filter((h) => h.text.includes(label)).map((h) => h.text.split(" ")[0])).toEqual([
      ":white_check_mark:",
    ]);
  }, 60_000);

  it("IRC: a line per subscribed event in the channel, deploys and locks in order", async () => {
    const id = await deploy();
    await t.waitForDeploy(id);
    const label = `shop/staging#${(await t.store.deploys.get(id)).number}`;
    expect(
      (await t.api("PUT", "/api/v1/apps/shop/environments/staging/lock", { reason: "db migration" })).status,
    ).toBe(200);
    expect((await t.api("DELETE", "/api/v1/apps/shop/environments/staging/lock")).status).toBe(200);
    await until(() => irc.messages.some((m) => m.text.includes("unlocked")), 20_000);
    const lines = irc.messages.filter((m) => m.text.includes(label) || m.text.includes("locked"));
    expect(lines.every((m) => m.target === "#deploys" && m.from === "turnout")).toBe(true);
    expect(lines.map((m) => m.text.replace(/ http\S+$/, ""))).toEqual([
      expect.stringMatching(new RegExp(`^${label} \\S+\\.\\.\\S+ by admin started$`)),
      expect.stringMatching(new RegExp(`^${label} \\S+\\.\\.\\S+ by admin succeeded$`)),
      "shop/staging locked by admin: db migration",
      "shop/staging unlocked by admin",
    ]);
    // The client registered and joined before it spoke.
    const order = irc.lines.map((l) => l.split(" ")[0]);
    expect(order.indexOf("JOIN")).toBeLessThan(order.indexOf("PRIVMSG"));
    // The webhook (subscribed to everything at app level) got the lock events too.
    await until(() => hook.received.some((p) => p.event.kind === "lock.unlocked"), 20_000);
    expect(hook.received.filter((p) => p.event.kind.startsWith("lock.")).map((p) => p.event.kind)).toEqual([
      "lock.locked",
      "lock.unlocked",
    ]);
  }, 60_000);
});
