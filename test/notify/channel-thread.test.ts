// biome-ignore-all lint/suspicious/noExplicitAny: payloads are untyped JSON in these tests
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import type { NotificationEvent } from "../../src/domain/notification-event.js";
import type { ChannelDelivery } from "../../src/notify/channel.js";
import { ChannelThread } from "../../src/notify/channel-thread.js";
import { openChannels } from "../../src/notify/open-channels.js";
import type { ClaimedDelivery } from "../../src/store/notify-outbox.js";
import { startWebhookReceiver } from "../helpers/notify-receivers.js";

/**
 * The notification thread: webhook, Slack and IRC channels send from a
 * worker thread, so a deploy's chain on the main thread never waits on them.
 */
const SECRET = "thread-secret-0123456789";

function delivery(id: number): ChannelDelivery {
  const event = {
    id,
    kind: "deploy.succeeded",
    app: "shop",
    env: "staging",
    at: new Date().toISOString(),
    actor: "alice",
    deploy: { id: 7, ref: "main", sha: "a".repeat(40), outcome: "succeeded" },
  } as unknown as NotificationEvent;
  return { id, attempt: 1, event, state: null, links: { deploy: "http://turnout.test/#/deploys/7" } };
}

function claimed(id: number): ClaimedDelivery {
  const { event } = delivery(id);
  const now = new Date().toISOString();
  return {
    id,
    eventId: id,
    channel: "hook",
    kind: event.kind,
    app: "shop",
    env: "staging",
    deployId: 7,
    subject: "deploy:7",
    status: "pending",
    attempts: 1,
    nextAttemptAt: now,
    lastError: null,
    createdAt: now,
    updatedAt: now,
    deliveredAt: null,
    event,
    state: null,
  };
}

const webhook = (url: string) => ({ name: "hook", type: "webhook", options: { url, secret: SECRET } });

describe("the notification thread", () => {
  const cleanups: (() => Promise<void> | void)[] = [];
  afterAll(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup();
  });

  it("sends a signed webhook and answers with the channel's outcome", async () => {
    const receiver = await startWebhookReceiver(SECRET);
    cleanups.push(() => receiver.close());
    const thread = await ChannelThread.start([webhook(receiver.url)], () => undefined);
    cleanups.push(() => thread.close());
    const hook = thread.channels().get("hook")!;
    expect(hook.type).toBe("webhook");
    const result = await hook.send(delivery(1), new AbortController().signal);
    expect(result).toEqual({ outcome: "delivered" });
    expect(receiver.received.map((p: any) => [p.delivery, p.event.kind])).toEqual([[1, "deploy.succeeded"]]);
    expect(receiver.badSignatures).toBe(0);

    receiver.down = true;
    const retry = await hook.send(delivery(2), new AbortController().signal);
    expect(retry.outcome).toBe("retry");
  });

  it("sends a round's chains in one message: each chain in order, a failed delivery holding back the rest", async () => {
    const receiver = await startWebhookReceiver(SECRET);
    cleanups.push(() => receiver.close());
    const thread = await ChannelThread.start([webhook(receiver.url)], () => undefined, {
      retry: { baseMs: 60_000, maxMs: 60_000, maxAttempts: 5, maxAgeMs: 3_600_000 },
    });
    cleanups.push(() => thread.close());
    expect(thread.carries("hook")).toBe(true);
    expect(thread.carries("github")).toBe(false);
    const linked = (id: number) => ({ ...claimed(id), links: {} });
    const updates = await thread.sendChains([[linked(11), linked(12), linked(13)], [linked(21)]]);
    expect(updates).toEqual([
      { id: 11, outcome: "delivered" },
      { id: 12, outcome: "delivered" },
      { id: 13, outcome: "delivered" },
      { id: 21, outcome: "delivered" },
    ]);
    // In order within the chain (the other chain may come anywhere).
    const first = receiver.received.map((p: any) => p.delivery).filter((id: number) => id < 20);
    expect(first).toEqual([11, 12, 13]);

    receiver.down = true;
    const held = await thread.sendChains([[linked(31), linked(32)]]);
    expect(held[0]).toMatchObject({ id: 31, outcome: "retry" });
    // The retry policy given to the thread decides when: a minute away.
    expect(Date.parse((held[0] as { nextAttemptAt: string }).nextAttemptAt)).toBeGreaterThan(
      Date.now() + 20_000,
    );
    expect(held[1]).toEqual({ id: 32, outcome: "released" });
  });

  it("sends while the main thread is busy", async () => {
    // The receiver is another process, so it answers while this thread spins; it marks a file on arrival.
    const dir = mkdtempSync(path.join(tmpdir(), "turnout-thread-"));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const marker = path.join(dir, "arrived");
    const child = spawn(
      process.execPath,
      [
        "-e",
        `const fs = require("node:fs");
         const s = require("node:http").createServer((q, r) => { q.resume(); q.on("end", () => {
           fs.writeFileSync(${JSON.stringify(marker)}, "1"); r.writeHead(204).end(); }); });
         s.listen(0, "127.0.0.1", () => console.log(s.address().port));`,
      ],
      { stdio: ["ignore", "pipe", "inherit"] },
    );
    cleanups.push(() => {
      child.kill();
    });
    const port = await new Promise<number>((resolve) =>
      child.stdout!.once("data", (d) => resolve(Number(d))),
    );
    const thread = await ChannelThread.start([webhook(`http://127.0.0.1:${port}/`)], () => undefined);
    cleanups.push(() => thread.close());
    const sent = thread.channels().get("hook")!.send(delivery(3), new AbortController().signal);
    // Spin without yielding: a send made on this thread could not leave before the loop ends.
    const deadline = Date.now() + 20_000;
    while (!existsSync(marker) && Date.now() < deadline) {
      /* busy */
    }
    expect(existsSync(marker)).toBe(true);
    expect(await sent).toEqual({ outcome: "delivered" });
  });

  it("aborts a send that takes too long, and the answer is a retry", async () => {
    // A receiver that never answers.
    const silent = createServer(() => undefined);
    await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
    cleanups.push(() => {
      silent.closeAllConnections();
      silent.close();
    });
    const { port } = silent.address() as { port: number };
    const thread = await ChannelThread.start([webhook(`http://127.0.0.1:${port}/`)], () => undefined);
    cleanups.push(() => thread.close());
    const controller = new AbortController();
    const sending = thread.channels().get("hook")!.send(delivery(4), controller.signal);
    setTimeout(() => controller.abort(), 100);
    const result = await sending;
    expect(result.outcome).toBe("retry");
    expect((result as { reason: string }).reason).toMatch(/could not reach the receiver/);
  });

  it("answers a send in flight when it closes (retry, never lost), and every later one too", async () => {
    const silent = createServer(() => undefined);
    await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
    cleanups.push(() => {
      silent.closeAllConnections();
      silent.close();
    });
    const { port } = silent.address() as { port: number };
    const thread = await ChannelThread.start([webhook(`http://127.0.0.1:${port}/`)], () => undefined);
    const hook = thread.channels().get("hook")!;
    const inFlight = hook.send(delivery(5), new AbortController().signal);
    await new Promise((resolve) => setTimeout(resolve, 50));
    await thread.close();
    expect((await inFlight).outcome).toBe("retry");
    expect((await hook.send(delivery(6), new AbortController().signal)).outcome).toBe("retry");
  });

  it("refuses bad channel settings at start with the channel's own error code", async () => {
    await expect(
      ChannelThread.start(
        [{ name: "hook", type: "webhook", options: { url: "ftp://x", secret: SECRET } }],
        () => undefined,
      ),
    ).rejects.toMatchObject({ code: "E_CONFIG", message: expect.stringMatching(/hook/) });
    await expect(
      openChannels({
        entries: [{ name: "pager", type: "pager", options: {} }],
        serverTypes: [],
        report: () => undefined,
      }),
    ).rejects.toMatchObject({ code: "E_CONFIG", message: expect.stringMatching(/unknown type 'pager'/) });
  });

  it("keeps the configured order and puts the server's own types on the main thread", async () => {
    const receiver = await startWebhookReceiver(SECRET);
    cleanups.push(() => receiver.close());
    const own = {
      type: "own",
      create: (name: string) => ({
        name,
        type: "own",
        send: async () => ({ outcome: "delivered" as const, detail: "main thread" }),
      }),
    };
    const opened = await openChannels({
      entries: [{ name: "mine", type: "own", options: {} }, webhook(receiver.url)],
      serverTypes: [own],
      report: () => undefined,
    });
    cleanups.push(() => opened.close());
    expect([...opened.channels.keys()]).toEqual(["mine", "hook"]);
    expect(await opened.channels.get("mine")!.send(delivery(8), new AbortController().signal)).toEqual({
      outcome: "delivered",
      detail: "main thread",
    });
    expect(await opened.channels.get("hook")!.send(delivery(9), new AbortController().signal)).toEqual({
      outcome: "delivered",
    });
    expect(receiver.received.map((p: any) => p.delivery)).toEqual([9]);
  });
});
