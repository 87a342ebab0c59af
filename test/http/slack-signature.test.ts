import { describe, expect, it } from "vitest";
import { resolveSlackSettings } from "../../src/config/slack-settings.js";
import { parseChatCommand } from "../../src/domain/chat-command.js";
import { verifySlackSignature } from "../../src/http/integrations/slack-signature.js";

// Slack's own worked example (api.slack.com/authentication/verifying-requests-from-slack).
const SECRET = "8f742231b10e8888abcd99yyyzzz85a5";
const TIMESTAMP = "1531420618";
const BODY =
  "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&" +
  "channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&" +
  "response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&" +
  "trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
const SIGNATURE = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";
const AT = Number(TIMESTAMP) * 1000;

describe("Slack request signatures", () => {
  it("accepts Slack's documented example", () => {
    expect(verifySlackSignature(SECRET, Buffer.from(BODY), TIMESTAMP, SIGNATURE, AT + 299_000)).toEqual({
      ok: true,
      signature: SIGNATURE.slice(3),
    });
  });

  it("refuses it outside the 5-minute window, with another secret, body or timestamp", () => {
    const body = Buffer.from(BODY);
    expect(verifySlackSignature(SECRET, body, TIMESTAMP, SIGNATURE, AT + 301_000).ok).toBe(false);
    expect(verifySlackSignature(SECRET, body, TIMESTAMP, SIGNATURE, AT - 301_000).ok).toBe(false);
    expect(verifySlackSignature(`${SECRET}x`, body, TIMESTAMP, SIGNATURE, AT).ok).toBe(false);
    expect(verifySlackSignature(SECRET, Buffer.from(`${BODY}&x=1`), TIMESTAMP, SIGNATURE, AT).ok).toBe(false);
    expect(verifySlackSignature(SECRET, body, "1531420619", SIGNATURE, AT).ok).toBe(false);
    expect(verifySlackSignature(SECRET, body, TIMESTAMP, SIGNATURE.toUpperCase(), AT).ok).toBe(false);
    expect(verifySlackSignature(SECRET, body, "-5", SIGNATURE, AT).ok).toBe(false);
    expect(verifySlackSignature(SECRET, body, TIMESTAMP, undefined, AT).ok).toBe(false);
    expect(verifySlackSignature(SECRET, body, undefined, SIGNATURE, AT).ok).toBe(false);
  });
});

describe("Slack settings", () => {
  it("are off without a signing secret, and refuse users mapped without one", () => {
    expect(resolveSlackSettings(undefined, {})).toBeUndefined();
    expect(() => resolveSlackSettings({ users: { U0A: { name: "alice", role: "admin" } } }, {})).toThrow(
      /signing secret is not set \(variable TURNOUT_SLACK_SIGNING_SECRET\)/,
    );
  });

  it("map users to identities, and refuse bad ids, names and origins", () => {
    const settings = resolveSlackSettings(
      { users: { U0A: { name: "alice", role: "deployer", apps: ["shop"] } } },
      { TURNOUT_SLACK_SIGNING_SECRET: "s" },
    );
    expect(settings?.users.get("U0A")).toEqual({ name: "alice", role: "deployer", apps: ["shop"] });
    expect(settings?.responseUrlOrigins).toEqual(["https://hooks.slack.com"]);
    const env = { TURNOUT_SLACK_SIGNING_SECRET: "s" };
    expect(() => resolveSlackSettings({ users: { alice: { name: "alice", role: "admin" } } }, env)).toThrow(
      /not a Slack user id/,
    );
    expect(() =>
      resolveSlackSettings({ users: { U0A: { name: "Alice Smith", role: "admin" } } }, env),
    ).toThrow(/not a valid identity name/);
    expect(() => resolveSlackSettings({ response_url_origins: ["file:///etc"] }, env)).toThrow(/not http/);
  });
});

describe("chat command parsing", () => {
  it("reads commands and keeps a lock's reason as typed", () => {
    expect(parseChatCommand("deploy shop production v1.2~1")).toEqual({
      kind: "deploy",
      app: "shop",
      env: "production",
      ref: "v1.2~1",
    });
    expect(parseChatCommand("  lock shop production  db  work: 10 min ")).toEqual({
      kind: "lock",
      app: "shop",
      env: "production",
      reason: "db  work: 10 min",
    });
    expect(parseChatCommand("approve shop/production#42")).toEqual({
      kind: "approve",
      deploy: { app: "shop", env: "production", number: 42 },
    });
    expect(parseChatCommand("rollback shop production 7")).toEqual({
      kind: "rollback",
      app: "shop",
      env: "production",
      to: 7,
    });
    expect(parseChatCommand("status")).toEqual({ kind: "status" });
    expect(() => parseChatCommand("rollback shop production 0")).toThrow(/not a deploy number/);
    expect(() => parseChatCommand(`lock shop production ${"x".repeat(501)}`)).toThrow(/longer than 500/);
    expect(() => parseChatCommand("deploy shop production HEAD")).toThrow(/HEAD/);
  });
});
