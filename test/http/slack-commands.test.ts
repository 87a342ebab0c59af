// biome-ignore-all lint/suspicious/noExplicitAny: API responses are untyped JSON in these tests
import { existsSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type FakeSlack, signedCommand, startFakeSlack } from "../helpers/fake-slack.js";
import { startTurnout, type TestTurnout } from "../helpers/turnout.js";
import { until } from "../helpers/wait.js";

/**
 * Slack slash commands against the real server, store, git repository and
 * shell deploys. A local HTTP server stands in for Slack's response_url
 * endpoints and checks every message it gets; commands are signed as Slack
 * documents it, by the test.
 */
const SECRET = "8f742231b10e8888abcd99yyyzzz85a5";
const DEPLOYER = "U0ALICE";
const VIEWER = "U0VICTOR";
const ADMIN = "U0ADA";
const STRANGER = "U0MALLORY";

let t: TestTurnout;
let slack: FakeSlack;
let marker: string;

beforeAll(async () => {
  slack = await startFakeSlack();
  const dir = mkdtempSync(path.join(tmpdir(), "turnout-slack-"));
  marker = path.join(dir, "marker");
  const settingsFile = path.join(dir, "settings.yaml");
  writeFileSync(
    settingsFile,
    [
      "slack:",
      "  signing_secret_env: SLACK_SIGNING_SECRET",
      `  response_url_origins: ["${slack.origin}"]`,
      "  users:",
      `    ${DEPLOYER}: { name: alice, role: deployer, apps: [shop] }`,
      `    ${VIEWER}: { name: victor, role: viewer }`,
      `    ${ADMIN}: { name: ada, role: admin }`,
      "",
    ].join("\n"),
  );
  t = await startTurnout({
    environment: { SLACK_SIGNING_SECRET: SECRET, TURNOUT_SETTINGS_FILE: settingsFile },
  });
  await t.writeManifest(
    "other",
    `repo: "{repo}"\nenvironments:\n  staging:\n    deploy:\n      provider: shell\n      command: [echo, other]\n`,
  );
});

afterAll(async () => {
  await t?.stop();
  await slack?.close();
});

const endpoint = () => `${t.url}/api/v1/integrations/slack/commands`;

async function send(
  user: string,
  text: string,
  options: { secret?: string; timestamp?: number } = {},
): Promise<{ status: number; body: any; responseUrl: string; request: { body: string; headers: any } }> {
  const responseUrl = slack.responseUrl();
  const request = signedCommand(
    options.secret ?? SECRET,
    { user_id: user, text, response_url: responseUrl },
    options.timestamp,
  );
  return { ...(await post(request)), responseUrl, request };
}

async function post(request: { body: string; headers: Record<string, string> }) {
  const response = await fetch(endpoint(), { method: "POST", headers: request.headers, body: request.body });
  return { status: response.status, body: (await response.json()) as any };
}

async function deployCount(app = "shop", env = "staging"): Promise<number> {
  return (await t.store.deploys.list({ app, env, limit: 200 })).length;
}

describe("Slack commands", () => {
  it("deploys as the mapped identity, answers at once, and posts progress to the response_url", async () => {
    const before = await deployCount();
    const reply = await send(DEPLOYER, "deploy shop staging main");
    expect(reply.status).toBe(200);
    expect(reply.body.response_type).toBe("in_channel");
    expect(reply.body.text).toMatch(/^alice requested shop\/staging#\d+ \([0-9a-f]{7} from main/);
    const id = Number(/\[deploy (\d+)\]/.exec(reply.body.text)![1]);
    const deploy = await t.waitForDeploy(id);
    expect(deploy).toMatchObject({ status: "succeeded", trigger: "chat", user: "alice", ref: "main" });
    expect(await deployCount()).toBe(before + 1);

    await until(
      () => slack.messages(reply.responseUrl).some((m) => /succeeded/.test(m.text)),
      15_000,
      "the outcome posted",
    );
    const texts = slack.messages(reply.responseUrl).map((m) => m.text);
    expect(texts).toEqual([
      `shop/staging#${deploy.number} started (${deploy.sha.slice(0, 7)})`,
      `shop/staging#${deploy.number} succeeded`,
    ]);
    expect(slack.messages(reply.responseUrl).every((m) => m.response_type === "in_channel")).toBe(true);
    expect(slack.problems).toEqual([]);
  });

  it("refuses a forged command: wrong secret, altered body, no signature; nothing runs", async () => {
    const before = await deployCount();
    const forged = await send(DEPLOYER, "deploy shop staging", { secret: "not-the-secret" });
    expect(forged.status).toBe(401);
    expect(forged.body.error.code).toBe("E_UNAUTHORIZED");

    // Signed for "status", sent as "deploy".
    const signed = signedCommand(SECRET, {
      user_id: DEPLOYER,
      text: "status",
      response_url: slack.responseUrl(),
    });
    const altered = await post({
      ...signed,
      body: signed.body.replace("text=status", "text=deploy+shop+staging"),
    });
    expect(altered.status).toBe(401);

    const { "x-slack-signature": _dropped, ...unsigned } = signed.headers;
    expect((await post({ body: signed.body, headers: unsigned })).status).toBe(401);
    const badFormat = await post({
      ...signed,
      headers: { ...signed.headers, "x-slack-signature": "v1=abc" },
    });
    expect(badFormat.status).toBe(401);
    expect(await deployCount()).toBe(before);
  });

  it("refuses a replayed command: a stale timestamp, or the same signed request twice", async () => {
    const before = await deployCount();
    const stale = await send(DEPLOYER, "deploy shop staging", {
      timestamp: Math.floor(Date.now() / 1000) - 6 * 60,
    });
    expect(stale.status).toBe(401);
    const future = await send(DEPLOYER, "deploy shop staging", {
      timestamp: Math.floor(Date.now() / 1000) + 6 * 60,
    });
    expect(future.status).toBe(401);
    expect(await deployCount()).toBe(before);

    const first = await send(DEPLOYER, "lock shop staging replay test");
    expect(first.status).toBe(200);
    expect(first.body.text).toBe("shop/staging locked by alice: replay test");
    await t.api("DELETE", "/api/v1/apps/shop/environments/staging/lock");
    const again = await post(first.request);
    expect(again.status).toBe(401);
    expect(again.body.error.code).toBe("E_UNAUTHORIZED");
    // The replay did not lock again.
    const env = await t.api("GET", "/api/v1/apps/shop/environments/staging");
    expect(env.body.environment.lock).toBeNull();
  });

  it("an unmapped Slack user can do nothing", async () => {
    const before = await deployCount();
    for (const text of [
      "deploy shop staging",
      "lock shop staging mine now",
      "status",
      "rollback shop staging",
    ]) {
      const reply = await send(STRANGER, text);
      expect(reply.status).toBe(200);
      expect(reply.body.response_type).toBe("ephemeral");
      expect(reply.body.text).toMatch(
        /^Refused \(E_FORBIDDEN\): your Slack user \(U0MALLORY\) is not mapped/,
      );
      expect(slack.messages(reply.responseUrl)).toEqual([]);
    }
    expect(await deployCount()).toBe(before);
    const env = await t.api("GET", "/api/v1/apps/shop/environments/staging");
    expect(env.body.environment.lock).toBeNull();
  });

  it("roles and app limits apply as for tokens", async () => {
    const before = await deployCount();
    const viewer = await send(VIEWER, "deploy shop staging");
    expect(viewer.body).toMatchObject({ response_type: "ephemeral" });
    expect(viewer.body.text).toMatch(/^Refused \(E_FORBIDDEN\): token 'victor' \(viewer\) may not deploy/);
    // alice is limited to shop: another app does not exist for her.
    const other = await send(DEPLOYER, "deploy other staging");
    expect(other.body.text).toMatch(/^Refused \(E_NOT_FOUND\)/);
    expect(await deployCount()).toBe(before);
    expect(await deployCount("other")).toBe(0);
    // The viewer may read.
    const status = await send(VIEWER, "status");
    expect(status.body.response_type).toBe("ephemeral");
    expect(status.body.text).toMatch(/^other\/staging: nothing deployed yet/m);
    expect(status.body.text).toMatch(/^shop\/staging: [0-9a-f]{7} \(#\d+\)/m);
    const limited = await send(DEPLOYER, "status");
    expect(limited.body.text).not.toMatch(/other/);
  });

  it("parses strictly: usage, names and refs are checked before anything runs", async () => {
    const before = await deployCount();
    const cases: Array<[string, RegExp]> = [
      ["deploy shop", /^Refused \(E_BAD_REQUEST\): usage: deploy APP ENV \[REF\]/],
      ["deploy shop staging main extra", /^Refused \(E_BAD_REQUEST\): usage: deploy APP ENV/],
      [`deploy shop staging $(touch\${IFS}${marker})`, /^Refused \(E_INVALID_REF\)/],
      ["deploy shop staging --upload-pack=touch", /^Refused \(E_INVALID_REF\)/],
      ["deploy ../etc staging", /^Refused \(E_INVALID_NAME\)/],
      ["rollback shop staging -1", /^Refused \(E_BAD_REQUEST\): not a deploy number/],
      ["approve shop/staging", /^Refused \(E_BAD_REQUEST\): usage: approve DEPLOY/],
      ["lock shop staging", /^Refused \(E_BAD_REQUEST\): usage: lock APP ENV REASON/],
      ["frobnicate", /^Refused \(E_BAD_REQUEST\): unknown command "frobnicate"/],
    ];
    for (const [text, expected] of cases) {
      const reply = await send(ADMIN, text);
      expect(reply.body.response_type, text).toBe("ephemeral");
      expect(reply.body.text, text).toMatch(expected);
    }
    expect(existsSync(marker)).toBe(false);
    expect(await deployCount()).toBe(before);
    const help = await send(ADMIN, "");
    expect(help.body.text).toMatch(/deploy APP ENV \[REF\]/);
  });

  it("lock refuses deploys (with the code in words) until unlock; text from users is escaped for Slack", async () => {
    const lock = await send(ADMIN, "lock shop staging db migration <!channel> & friends");
    expect(lock.body.response_type).toBe("in_channel");
    // Slack escapes these in what it sends; the lock keeps the reason as typed, the reply escapes it again.
    expect(lock.body.text).toBe("shop/staging locked by ada: db migration &lt;!channel&gt; &amp; friends");
    const env = await t.api("GET", "/api/v1/apps/shop/environments/staging");
    expect(env.body.environment.lock).toMatchObject({
      lockedBy: "ada",
      reason: "db migration <!channel> & friends",
    });

    const before = await deployCount();
    const refused = await send(DEPLOYER, "deploy shop staging");
    expect(refused.body.response_type).toBe("ephemeral");
    expect(refused.body.text).toMatch(/^Refused \(E_LOCKED\): /);
    expect(await deployCount()).toBe(before);

    const unlock = await send(DEPLOYER, "unlock shop staging");
    expect(unlock.body.text).toBe("shop/staging unlocked by alice");
    const again = await send(DEPLOYER, "unlock shop staging");
    expect(again.body.text).toBe("shop/staging was not locked");
  });

  it("rolls back to an earlier deploy and follows it; approve answers with the engine's refusal when nothing waits", async () => {
    const first = await send(DEPLOYER, "deploy shop staging");
    const firstId = Number(/\[deploy (\d+)\]/.exec(first.body.text)![1]);
    const firstDeploy = await t.waitForDeploy(firstId);
    await t.repo.commit({ VERSION: "2.0.0\n" }, "second");
    const second = await send(DEPLOYER, "deploy shop staging main");
    await t.waitForDeploy(Number(/\[deploy (\d+)\]/.exec(second.body.text)![1]));

    const rollback = await send(DEPLOYER, `rollback shop staging ${firstDeploy.number}`);
    expect(rollback.body.response_type).toBe("in_channel");
    expect(rollback.body.text).toMatch(new RegExp(`^alice requested a rollback to #${firstDeploy.number}: `));
    const id = Number(/\[deploy (\d+)\]/.exec(rollback.body.text)![1]);
    const done = await t.waitForDeploy(id);
    expect(done).toMatchObject({ status: "succeeded", user: "alice", sha: firstDeploy.sha });
    await until(
      () => slack.messages(rollback.responseUrl).some((m) => /succeeded$/.test(m.text)),
      15_000,
      "the rollback's outcome posted",
    );

    const approve = await send(DEPLOYER, `approve ${id}`);
    expect(approve.body.response_type).toBe("ephemeral");
    expect(approve.body.text).toMatch(/^Refused \(E_[A-Z_]+\): /);
    const missing = await send(DEPLOYER, "approve shop/staging#9999");
    expect(missing.body.text).toMatch(/^Refused \(E_NOT_FOUND\): deploy shop\/staging#9999 not found/);
    expect(slack.problems).toEqual([]);
  });
});
