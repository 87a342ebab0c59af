import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { startTurnout, type TestTurnout } from "../helpers/turnout.js";
import { until } from "../helpers/wait.js";

/**
 * While the server drains, every request that could change something is
 * refused with 503 E_UNAVAILABLE — except the few that only read or help the
 * shutdown along — and reads and live log streams go on.
 */
describe("HTTP while the server shuts down", () => {
  let t: TestTurnout | undefined;
  let marks: string;
  let running: number | undefined;
  afterEach(async () => {
    // A failed test leaves its deploy running: end it, or the shutdown waits for its whole grace.
    if (running !== undefined)
      await t?.api("POST", `/api/v1/deploys/${running}/cancel`, {}).catch(() => undefined);
    running = undefined;
    await t?.stop();
    t = undefined;
    await rm(marks, { recursive: true, force: true });
  });

  it("refuses changes with 503, serves reads, streams logs, and lets a cancel end the wait", async () => {
    marks = await mkdtemp(path.join(tmpdir(), "turnout-gate-marks-"));
    const started = path.join(marks, "started");
    t = await startTurnout({
      manifest: `repo: "{repo}"
environments:
  staging:
    deploy:
      provider: shell
      script: |
        touch ${JSON.stringify(started)}
        echo "waiting for a go that never comes"
        while true; do sleep 0.1; done
`,
    });
    const turnout = t;
    const deploy = (await turnout.api("POST", "/api/v1/apps/shop/environments/staging/deploys", {})).body
      .deploy;
    running = deploy.id;
    await until(() => existsSync(started), 20_000, "deploy running");

    // A grace far longer than this test may take: only the cancel below can end the wait.
    const closing = turnout.server.close({ graceMs: 3_600_000 });
    await until(() => turnout.engine.shuttingDown(), 5_000, "draining");

    const refusals = await Promise.all([
      turnout.api("POST", "/api/v1/apps/shop/environments/staging/deploys", {}),
      turnout.api("POST", "/api/v1/apps/shop/environments/staging/rollback", {}),
      turnout.api("PUT", "/api/v1/apps/shop/environments/staging/lock", { reason: "maintenance" }),
      turnout.api("DELETE", "/api/v1/apps/shop/environments/staging/lock"),
      turnout.api("POST", "/api/v1/tokens", { name: "late", role: "viewer" }),
      turnout.api("POST", "/api/v1/no-such-route", {}),
      turnout.api("POST", "/api/v1/webhooks/github", {}),
    ]);
    for (const refused of refusals) {
      expect(refused.status, JSON.stringify(refused.body)).toBe(503);
      expect(refused.body.error.code).toBe("E_UNAVAILABLE");
      expect(refused.body.error.message).toMatch(/^the server is shutting down/);
    }
    // A push too; git clients are answered in text, which git shows.
    const push = await turnout.api("POST", "/git/shop.git/git-receive-pack", {});
    expect(push.status).toBe(503);
    expect(push.body).toMatch(/^turnout: the server is shutting down/);
    // Reads answer as before.
    expect((await turnout.api("GET", "/api/v1/apps")).status).toBe(200);
    expect((await turnout.api("GET", `/api/v1/deploys/${deploy.id}`)).body.deploy.status).toBe("running");
    // An agent's blob batch is a read sent as POST: not refused (here: a 404 for an unknown blob).
    const agentToken = (
      await turnout.store.tokens.create({ name: "host", role: "agent", apps: null, createdBy: "test" })
    ).token;
    const blobs = await turnout.api("POST", "/api/v1/blobs/batch", { digests: ["0".repeat(64)] }, agentToken);
    expect(blobs.status).not.toBe(503);

    // A follower can still attach to the running deploy's log, and sees it end.
    const response = await fetch(`${turnout.url}/api/v1/deploys/${deploy.id}/log`, {
      headers: { authorization: `Bearer ${turnout.adminToken}`, accept: "text/event-stream" },
    });
    expect(response.status).toBe(200);
    const reader = response.body!.getReader();
    const decoder = new TextDecoder();
    let streamed = "";
    const readUntil = async (text: string) => {
      while (!streamed.includes(text)) {
        const { value, done } = await reader.read();
        if (done) throw new Error(`stream ended before ${JSON.stringify(text)}:\n${streamed}`);
        streamed += decoder.decode(value, { stream: true });
      }
    };
    await readUntil("waiting for a go that never comes");

    // A cancel is let through: one deploy fewer to wait for.
    const cancel = await turnout.api("POST", `/api/v1/deploys/${deploy.id}/cancel`, {});
    expect(cancel.status).toBe(202);
    await readUntil("event: end");
    const end = /event: end\ndata: (.*)\n/.exec(streamed.slice(streamed.indexOf("event: end")))!;
    // Stopped by a person: cancelled, not interrupted.
    expect(JSON.parse(end[1]!).deploy).toMatchObject({ status: "cancelled", errorCode: null });
    await closing;
  });
});
