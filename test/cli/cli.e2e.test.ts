import { readFileSync, statSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureBuilt, turnout } from "../helpers/built-cli.js";
import { freePort } from "../helpers/fleet.js";
import { enrollHost } from "../helpers/hosts.js";
import { startTurnout, type TestTurnout } from "../helpers/turnout.js";
import { tempDir } from "./helpers.js";

/**
 * The built `turnout` executable as a real process against the real server
 * (in this process, on a loopback port) with a real git repository and real
 * shell deploys.
 */
let t: TestTurnout;
let home: string;
let auth: string[];

/** An environment with no TURNOUT_* and a private home, so nothing leaks in from the machine. */
function cleanEnv(extra: Record<string, string> = {}): Record<string, string> {
  return { HOME: home, XDG_CONFIG_HOME: path.join(home, ".config"), ...extra };
}

function cli(argv: string[], extra: Record<string, string> = {}) {
  return turnout([...argv, ...auth], { env: cleanEnv(extra), cwd: home });
}

const extraApps = (repo: string) => ({
  broken: `repo: "${repo}"
environments:
  staging:
    branch: main
    deploy:
      provider: shell
      script: |
        echo "about to fail"
        exit 3
      timeout: 1m
`,
  echo: `repo: "${repo}"
environments:
  staging:
    branch: main
    deploy:
      provider: shell
      script: |
        echo "greeting=$TURNOUT_PARAM_GREETING"
      timeout: 1m
`,
  colours: `repo: "${repo}"
environments:
  staging:
    branch: main
    deploy:
      provider: shell
      script: |
        printf '\\033[31mred\\033[0m \\033]0;pwned title\\007 \\033]52;c;ZXZpbA==\\007 \\033[2J done\\n'
      timeout: 1m
`,
  slow: `repo: "${repo}"
environments:
  staging:
    branch: main
    deploy:
      provider: shell
      script: |
        echo "sleeping"
        sleep 30
      timeout: 2m
`,
});

beforeAll(async () => {
  await ensureBuilt();
  t = await startTurnout();
  for (const [name, yaml] of Object.entries(extraApps("{repo}"))) await t.writeManifest(name, yaml);
  home = tempDir("turnout-cli-home-");
  auth = ["--server", t.url, "--token", t.adminToken];
}, 120_000);

afterAll(async () => {
  await t?.stop();
});

describe("turnout CLI against a real server", () => {
  it("deploy --follow prints the log and exits 0", async () => {
    const result = await cli(["deploy", "shop", "staging", "--follow"]);
    expect(result.stderr).toMatch(/^queued shop\/staging#1 \(id \d+\) at [0-9a-f]{12}\n/);
    expect(result.stdout).toContain(`deploying shop/staging at ${t.repo.head}`);
    expect(result.stdout).toContain("1.0.0\ndone\n");
    expect(result.stderr).toMatch(/shop\/staging#1 succeeded in \d+s\n$/);
    expect(result.code).toBe(0);
    const deploy = (await t.api("GET", "/api/v1/apps/shop/environments/staging/deploys/1")).body.deploy;
    expect(deploy).toMatchObject({ status: "succeeded", trigger: "cli" });
  });

  it("deploy without --follow reports the queued deploy and exits 0", async () => {
    const result = await cli(["deploy", "shop", "production", "main"]);
    expect(result.code).toBe(0);
    const match = /^queued shop\/production#(\d+) \(id (\d+)\) at ([0-9a-f]{12})\n$/.exec(result.stdout);
    expect(match).not.toBeNull();
    expect(t.repo.head.startsWith(match![3]!)).toBe(true);
    const finished = await t.waitForDeploy(Number(match![2]));
    expect(finished.status).toBe("succeeded");
  });

  it("a failing deploy exits 1 with the failure", async () => {
    const result = await cli(["deploy", "broken", "staging", "--follow"]);
    expect(result.code).toBe(1);
    expect(result.stdout).toContain("about to fail");
    expect(result.stderr).toMatch(/broken\/staging#1 failed: command_failed: .+\n$/);
  });

  it("passes --param values that contain '='", async () => {
    const result = await cli(["deploy", "echo", "staging", "--param", "GREETING=a=b c", "--follow"]);
    expect(result.code).toBe(0);
    expect(result.stdout).toContain("greeting=a=b c\n");
  });

  it("a locked environment refuses deploys with exit 1 and the reason", async () => {
    const locked = await cli(["lock", "shop", "production", "--reason", "release freeze"]);
    expect(locked.code).toBe(0);
    expect(locked.stdout).toBe("locked shop/production: release freeze\n");

    const refused = await cli(["deploy", "shop", "production"]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain("release freeze");
    expect(refused.stderr).toMatch(/^error: .*locked.* \(E_LOCKED\)\n$/);

    const status = await cli(["status"]);
    expect(status.stdout).toMatch(/shop +production .* admin: release freeze/);

    const unlocked = await cli(["unlock", "shop", "production"]);
    expect(unlocked.code).toBe(0);
    expect(unlocked.stdout).toMatch(/^unlocked shop\/production/);
    expect((await cli(["unlock", "shop", "production"])).stdout).toBe("shop/production was not locked\n");
  });

  it("shows escape codes in a lock reason escaped, in deploy's error and in status", async () => {
    const reason = "freeze \x1b]52;c;ZXZpbCBjb21tYW5k\x07\x1b[2J until 15:00";
    const escaped = "freeze \\x1b]52;c;ZXZpbCBjb21tYW5k\\x07\\x1b[2J until 15:00";
    const locked = await t.api("PUT", "/api/v1/apps/echo/environments/staging/lock", { reason });
    expect(locked.body.lock.reason).toBe(reason);
    try {
      const refused = await cli(["deploy", "echo", "staging"]);
      expect(refused.code).toBe(1);
      expect(refused.stderr).toBe(`error: echo/staging is locked by admin: ${escaped} (E_LOCKED)\n`);
      const overview = await cli(["status"]);
      const detail = await cli(["status", "echo", "staging"]);
      for (const shown of [overview.stdout, detail.stdout]) {
        expect(shown).toContain(`admin: ${escaped}`);
        expect(shown).not.toMatch(/[\x00-\x09\x0b-\x1f\x7f-\x9f]/);
      }
      // JSON stays the server's value, made safe for a terminal too.
      const json = await cli(["status", "echo", "staging", "--json"]);
      expect(JSON.parse(json.stdout).environment.lock.reason).toBe(reason);
      expect(json.stdout).not.toContain("\x1b");
    } finally {
      await t.api("DELETE", "/api/v1/apps/echo/environments/staging/lock");
    }
  });

  it("prints deploy logs with their colours but no other escape sequence", async () => {
    const followed = await cli(["deploy", "colours", "staging", "--follow"]);
    expect(followed.code).toBe(0);
    const logged = await cli(["logs", "colours/staging#1"]);
    for (const out of [followed.stdout, logged.stdout]) {
      expect(out).toContain("\x1b[31mred\x1b[0m ");
      expect(out).toContain("\\x1b]0;pwned title\\x07 \\x1b]52;c;ZXZpbA==\\x07 \\x1b[2J done\n");
      expect(out).not.toContain("\x1b]");
      expect(out).not.toContain("\x07");
    }
    // The stored log itself is unchanged: --json carries the exact bytes.
    const json = await cli(["logs", "colours/staging#1", "--json"]);
    const text = JSON.parse(json.stdout)
      .chunks.map((c: { text: string }) => c.text)
      .join("");
    expect(text).toContain("\x1b]0;pwned title\x07");
  });

  it("--json reports every failure as JSON on stderr, with the usual exit status", async () => {
    await t.api("PUT", "/api/v1/apps/echo/environments/staging/lock", { reason: "json test" });
    try {
      const refused = await cli(["deploy", "echo", "staging", "--json"]);
      expect(refused.code).toBe(1);
      expect(refused.stdout).toBe("");
      expect(JSON.parse(refused.stderr)).toEqual({
        error: {
          code: "E_LOCKED",
          message: "echo/staging is locked by admin: json test",
          details: expect.objectContaining({ lockedBy: "admin", reason: "json test" }),
        },
      });
    } finally {
      await t.api("DELETE", "/api/v1/apps/echo/environments/staging/lock");
    }

    const usage = await cli(["deploy", "shop", "--json"]);
    expect(usage.code).toBe(2);
    expect(JSON.parse(usage.stderr)).toEqual({
      error: {
        code: "E_USAGE",
        message: "missing required argument 'env'",
        details: { reason: "missingArgument" },
      },
    });

    const port = await freePort();
    const refusedConnection = await turnout(
      ["apps", "--json", "--server", `http://127.0.0.1:${port}`, "--token", "tnt_x"],
      { env: cleanEnv(), cwd: home },
    );
    expect(refusedConnection.code).toBe(1);
    expect(JSON.parse(refusedConnection.stderr)).toMatchObject({
      error: { code: "E_CONNECTION", details: { server: `http://127.0.0.1:${port}` } },
    });

    const missing = await cli(["logs", "shop/staging#999", "--json"]);
    expect(missing.code).toBe(1);
    expect(JSON.parse(missing.stderr).error.code).toBe("E_NOT_FOUND");
  });

  it("--json prints the API's response body", async () => {
    const config = await cli(["config", "status", "--json"]);
    expect(config.code).toBe(0);
    expect(JSON.parse(config.stdout)).toEqual((await t.api("GET", "/api/v1/config")).body);

    const apps = await cli(["apps", "--json"]);
    const parsed = JSON.parse(apps.stdout);
    expect(parsed.apps.map((a: { name: string }) => a.name)).toContain("shop");

    const deployed = await cli(["deploy", "shop", "staging", "--json"]);
    expect(deployed.code).toBe(0);
    const { deploy } = JSON.parse(deployed.stdout);
    expect(deploy).toMatchObject({
      app: "shop",
      env: "staging",
      trigger: "cli",
      label: `shop/staging#${deploy.number}`,
    });
    await t.waitForDeploy(deploy.id);
  });

  it("deploy --follow --json prints one JSON event per line", async () => {
    const result = await cli(["deploy", "shop", "staging", "--follow", "--json"]);
    expect(result.code).toBe(0);
    const events = result.stdout
      .trimEnd()
      .split("\n")
      .map((line) => JSON.parse(line));
    expect(events[0].event).toBe("queued");
    expect(events.at(-1)).toMatchObject({ event: "end", deploy: { status: "succeeded" } });
    const text = events
      .filter((e) => e.event === "log")
      .map((e) => e.text)
      .join("");
    expect(text).toContain("done\n");
  });

  it("logs APP/ENV#N prints the whole log, and --follow of a finished deploy ends at once", async () => {
    const deploy = (await t.api("GET", "/api/v1/apps/shop/environments/staging/deploys/1")).body.deploy;
    const page = (await t.api("GET", `/api/v1/deploys/${deploy.id}/log?offset=0`)).body;
    const expected = page.chunks.map((c: { text: string }) => c.text).join("");
    expect(expected).toContain("done");

    const byLabel = await cli(["logs", "shop/staging#1"]);
    expect(byLabel.code).toBe(0);
    expect(byLabel.stdout).toBe(expected);

    const followed = await cli(["logs", String(deploy.id), "--follow"]);
    expect(followed.code).toBe(0);
    expect(followed.stdout).toBe(expected);
    expect(followed.stderr).toMatch(/shop\/staging#1 succeeded/);

    const missing = await cli(["logs", "shop/staging#999"]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/\(E_NOT_FOUND\)\n$/);
  });

  it("history lists releases, per environment or for the whole app", async () => {
    const result = await cli(["history", "shop", "staging"]);
    expect(result.code).toBe(0);
    const lines = result.stdout.trimEnd().split("\n");
    const releases = (await t.api("GET", "/api/v1/apps/shop/environments/staging/releases")).body.releases;
    expect(lines).toHaveLength(releases.length + 1);
    expect(lines[0]).toMatch(/^DEPLOY +SHA +REF +FINGERPRINT +USER +TRIGGER +DATE$/);
    expect(lines.at(-1)).toMatch(
      new RegExp(
        `^#1 +${t.repo.head.slice(0, 12)} +main +[0-9a-f]{12} +admin +cli +\\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\dZ$`,
      ),
    );

    const all = await cli(["history", "shop"]);
    expect(all.code).toBe(0);
    expect(all.stdout).toMatch(/^ENV +DEPLOY +SHA +REF /);
    expect(all.stdout).toMatch(/^staging +#\d+/m);
    expect(all.stdout).toMatch(/^production +#\d+/m);
  });

  it("rollback --follow brings back the previous release", async () => {
    await t.repo.commit({ VERSION: "2.0.0\n" }, "second");
    const second = await cli(["deploy", "shop", "staging", "--follow"]);
    expect(second.stdout).toContain("2.0.0");
    const rollback = await cli(["rollback", "shop", "staging", "--follow"]);
    expect(rollback.code).toBe(0);
    expect(rollback.stderr).toMatch(/^queued rollback to #\d+ as shop\/staging#\d+/);
    expect(rollback.stdout).toContain("1.0.0");
    const history = await cli(["history", "shop", "staging", "--limit", "1"]);
    expect(history.stdout).toMatch(/ rollback +\S+ \S+\n$/);
  });

  it("cancel stops a running deploy, and following it exits 1", async () => {
    const queued = await cli(["deploy", "slow", "staging"]);
    expect(queued.code).toBe(0);
    const label = /^queued (slow\/staging#\d+)/.exec(queued.stdout)![1]!;
    const follow = cli(["logs", label, "--follow"]);
    const cancelled = await cli(["cancel", label]);
    expect(cancelled.code).toBe(0);
    expect(cancelled.stdout).toMatch(
      new RegExp(`^(cancelled|cancel requested for) ${label.replace(/[/#]/g, "\\$&")}`),
    );
    const followed = await follow;
    expect(followed.code).toBe(1);
    expect(followed.stderr).toMatch(/slow\/staging#\d+ (cancelled|failed: .*)\n$/);
  });

  it("usage errors exit 2 without contacting the server", async () => {
    const result = await cli(["deploy", "shop"]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain("missing required argument 'env'");
    expect((await cli(["deploy", "shop", "staging", "--bogus"])).code).toBe(2);
  });

  it("finds the admin token in the local server's data directory", async () => {
    const local = await turnout(["apps", "--server", t.url], {
      env: cleanEnv({ TURNOUT_HOME: t.dataDir }),
      cwd: home,
    });
    expect(local.stderr).toBe("");
    expect(local.code).toBe(0);
    expect(local.stdout).toMatch(/^APP +ENV +CURRENT +STATE +LOCK$/m);
    expect(local.stdout).toMatch(/^shop +staging +#\d+ [0-9a-f]{12}/m);

    const nowhere = await turnout(["apps", "--server", t.url], { env: cleanEnv(), cwd: home });
    expect(nowhere.code).toBe(1);
    expect(nowhere.stderr).toContain("turnout login");
  });

  it("finds the admin token of a server started with --data-dir through the client's --data-dir, anywhere on the line", async () => {
    for (const argv of [
      ["apps", "--server", t.url, "--data-dir", t.dataDir],
      ["--data-dir", t.dataDir, "apps", "--server", t.url],
    ]) {
      const result = await turnout(argv, { env: cleanEnv(), cwd: home });
      expect(result.stderr).toBe("");
      expect(result.code).toBe(0);
      expect(result.stdout).toMatch(/^shop +staging +/m);
    }
  });

  it("deploy --wait waits quietly and exits with the deploy's outcome", async () => {
    const ok = await cli(["deploy", "shop", "staging", "--wait"]);
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout).toBe("");
    expect(ok.stderr).toMatch(/^shop\/staging#\d+ succeeded in [^\n]+\n$/);

    const failed = await cli(["deploy", "broken", "staging", "--wait"]);
    expect(failed.code).toBe(1);
    expect(failed.stdout).toBe("");
    // No log: the script's output is not printed, only the outcome.
    expect(failed.stderr).not.toContain("about to fail");
    expect(failed.stderr).toMatch(/^broken\/staging#\d+ failed: command_failed: /);

    const json = await cli(["deploy", "shop", "staging", "--wait", "--json"]);
    expect(json.code).toBe(0);
    expect(JSON.parse(json.stdout).deploy.status).toBe("succeeded");

    const both = await cli(["deploy", "shop", "staging", "--wait", "--follow"]);
    expect(both.code).toBe(2);
    expect(both.stderr).toContain("cannot be used with option '--follow'");
  });

  it("login verifies the token, saves it 0600, and later commands use it", async () => {
    const loginHome = tempDir("turnout-login-");
    const env = { HOME: loginHome, XDG_CONFIG_HOME: path.join(loginHome, "xdg") };
    const file = path.join(loginHome, "xdg", "turnout", "credentials.json");

    const bad = await turnout(["login", "--server", t.url, "--token", "tnt_wrong"], { env, cwd: loginHome });
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/\(E_UNAUTHORIZED\)/);
    expect(statSync(file, { throwIfNoEntry: false })).toBeUndefined();

    const good = await turnout(["login", "--server", t.url, "--token", t.adminToken], {
      env,
      cwd: loginHome,
    });
    expect(good.code).toBe(0);
    expect(good.stdout + good.stderr).not.toContain(t.adminToken);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(JSON.parse(readFileSync(file, "utf8"))).toEqual({
      servers: { [t.url]: { token: t.adminToken } },
      default: t.url,
    });

    const status = await turnout(["status", "shop", "staging"], { env, cwd: loginHome });
    expect(status.code).toBe(0);
    expect(status.stdout).toMatch(/^shop\/staging\n/);
  });

  it("token create prints the token once; a viewer token may read but not deploy", async () => {
    const created = await cli(["token", "create", "ci-viewer", "--role", "viewer", "--app", "shop"]);
    expect(created.code).toBe(0);
    const token = created.stdout.trim();
    expect(token).toMatch(/^\S{20,}$/);
    expect(created.stderr).toContain("shown only this once");

    const viewer = ["--server", t.url, "--token", token];
    expect((await turnout(["status", "shop", ...viewer], { env: cleanEnv(), cwd: home })).code).toBe(0);
    const refused = await turnout(["deploy", "shop", "staging", ...viewer], { env: cleanEnv(), cwd: home });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/\(E_FORBIDDEN\)\n$/);

    const list = await cli(["token", "list"]);
    // Used by the status above: LAST USED says when.
    expect(list.stdout).toMatch(
      /^ci-viewer +viewer +shop +\d{4}-\d\d-\d\d [\d:]+Z +\d{4}-\d\d-\d\d [\d:]+Z +- *$/m,
    );
    expect(list.stdout).not.toContain(token);

    expect((await cli(["token", "revoke", "ci-viewer"])).code).toBe(0);
    const revoked = await turnout(["status", ...viewer], { env: cleanEnv(), cwd: home });
    expect(revoked.code).toBe(1);
    expect(revoked.stderr).toMatch(/\(E_UNAUTHORIZED\)/);
  });

  it("agent tokens and host grants: what hosts may receive, decided by an admin", async () => {
    const created = await cli([
      "token",
      "create",
      "shop-hosts",
      "--role",
      "agent",
      "--app",
      "shop",
      "--label",
      "role=web",
      "--label",
      "env=prod",
    ]);
    expect(created.code, created.stderr).toBe(0);
    expect(created.stderr).toContain(
      "created token 'shop-hosts' (agent, grants apps=shop labels=env=prod,role=web); it is shown only this once",
    );
    expect((await cli(["token", "create", "open-hosts", "--role", "agent", "--any-labels"])).code).toBe(0);
    const list = await cli(["token", "list"]);
    expect(list.stdout).toMatch(/^NAME +ROLE +APPS +HOST LABELS +CREATED/m);
    expect(list.stdout).toMatch(/^shop-hosts +agent +shop +env=prod,role=web /m);
    expect(list.stdout).toMatch(/^open-hosts +agent +\* +\* \(unrestricted\) /m);
    // Labels belong to agent tokens only; a label follows the label rules.
    expect((await cli(["token", "create", "v", "--role", "viewer", "--label", "a=b"])).code).toBe(2);
    expect((await cli(["token", "create", "v", "--role", "agent", "--label", "no-equals"])).code).toBe(2);

    await enrollHost(t.store, "cli-host", { apps: ["shop"], labels: ["role=web"] });
    const granted = await cli([
      "hosts",
      "grant",
      "cli-host",
      "--app",
      "shop",
      "--app",
      "echo",
      "--label",
      "role=db",
    ]);
    expect(granted.code, granted.stderr).toBe(0);
    expect(granted.stdout).toBe("cli-host: apps=echo,shop labels=role=db\n");
    expect((await t.store.hosts.get("cli-host"))?.grant).toEqual({
      apps: ["echo", "shop"],
      labels: ["role=db"],
    });
    const open = await cli(["hosts", "grant", "cli-host", "--all-apps", "--any-labels"]);
    expect(open.stdout).toBe("cli-host: apps=* labels=* (unrestricted)\n");
    // The apps must be said: --app or --all-apps.
    const vague = await cli(["hosts", "grant", "cli-host", "--label", "role=web"]);
    expect(vague.code).toBe(2);
    expect(vague.stderr).toContain("--app (repeatable) or --all-apps");
    const hosts = await cli(["hosts"]);
    expect(hosts.stdout).toMatch(/^cli-host +agent .* apps=\* labels=\* \(unrestricted\) +-$/m);
  });

  it("config status shows the revision and no problems", async () => {
    const result = await cli(["config", "status"]);
    expect(result.code).toBe(0);
    const { revision } = (await t.api("GET", "/api/v1/config")).body;
    expect(result.stdout).toContain(`revision   ${revision}\n`);
    expect(result.stdout).toMatch(/^problems {3}none$/m);
  });
});
