import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureBuilt, turnout } from "../helpers/built-cli.js";
import { startTurnout, type TestTurnout } from "../helpers/turnout.js";
import { tempDir } from "./helpers.js";

/**
 * `turnout deploy` outside a deploy window and past a locked commit, and
 * `turnout commit lock|unlock|locks`: the built executable as a real process
 * against the real server. The server's clock reads a Saturday, so
 * production (weekdays 09:00–17:00, Europe/Berlin) is closed.
 */
let t: TestTurnout;
let home: string;
let auth: string[];

const MANIFEST = `repo: "{repo}"
environments:
  staging:
    branch: main
    deploy:
      provider: shell
      script: |
        echo "deploying $TURNOUT_SHA"
  production:
    branch: main
    deploy_windows:
      timezone: Europe/Berlin
      allow:
        - { days: [mon-fri], from: "09:00", to: "17:00" }
    deploy:
      provider: shell
      script: |
        echo "deploying $TURNOUT_SHA"
`;

function cli(argv: string[]) {
  return turnout([...argv, ...auth], {
    env: { HOME: home, XDG_CONFIG_HOME: path.join(home, ".config") },
    cwd: home,
  });
}

beforeAll(async () => {
  await ensureBuilt();
  const offset = Date.parse("2030-01-12T12:00:00Z") - Date.now();
  t = await startTurnout({ manifest: MANIFEST, clock: () => new Date(Date.now() + offset) });
  home = tempDir("turnout-guards-home-");
  const token = (
    await t.store.tokens.create({ name: "dev", role: "deployer", apps: null, createdBy: "test" })
  ).token;
  auth = ["--server", t.url, "--token", token];
}, 120_000);

afterAll(async () => {
  await t?.stop();
});

describe("turnout deploy and deploy windows", () => {
  it("refuses outside the window, saying when the next opens; --force needs --reason", {
    timeout: 180_000,
  }, async () => {
    const refused = await cli(["deploy", "shop", "production"]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain("shop/production is outside its deploy windows");
    expect(refused.stderr).toContain("the next window opens 2030-01-14 09:00 Europe/Berlin (08:00 UTC)");
    expect(refused.stderr).toContain("E_OUTSIDE_WINDOW");

    const noReason = await cli(["deploy", "shop", "production", "--force"]);
    expect(noReason.code).toBe(1);
    expect(noReason.stderr).toContain("needs a reason");

    const forced = await cli(["deploy", "shop", "production", "--force", "--reason", "hotfix", "--follow"]);
    expect(forced.stderr + forced.stdout).toContain("deploying");
    expect(forced.code).toBe(0);
    const [deploy] = await t.store.deploys.list({ app: "shop", env: "production", limit: 1 });
    expect(deploy).toMatchObject({ status: "succeeded", ignoredSafeties: ["window"], user: "dev" });
  });
});

describe("turnout commit lock|unlock|locks", () => {
  it("locks a commit, refuses a deploy that would ship it, lists and unlocks it", {
    timeout: 240_000,
  }, async () => {
    const first = await cli(["deploy", "shop", "staging", "--follow"]);
    expect(first.code).toBe(0);
    const bad = await t.repo.commit({ VERSION: "bad\n" }, "bad merge");

    const locked = await cli(["commit", "lock", "shop", bad.slice(0, 9), "--reason", "revert follows"]);
    expect(locked.code).toBe(0);
    expect(locked.stdout).toContain(`locked commit ${bad.slice(0, 12)} of shop: revert follows`);

    const list = await cli(["commit", "locks", "shop"]);
    expect(list.stdout).toMatch(new RegExp(`${bad.slice(0, 12)}\\s+dev\\s+.*locked\\s+revert follows`));

    const pending = await cli(["pending", "shop", "staging"]);
    expect(pending.stdout).toContain("[locked by dev: revert follows]");

    const refused = await cli(["deploy", "shop", "staging"]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain(`would ship commit ${bad.slice(0, 12)}, locked by dev: revert follows`);
    expect(refused.stderr).toContain("E_COMMIT_LOCKED");

    const unlocked = await cli(["commit", "unlock", "shop", bad]);
    expect(unlocked.code).toBe(0);
    expect(unlocked.stdout).toContain(
      `unlocked commit ${bad.slice(0, 12)} of shop (was locked by dev: revert follows)`,
    );
    expect((await cli(["commit", "locks", "shop"])).stdout).toContain("no commit locks in shop");
    const history = await cli(["commit", "locks", "shop", "--all"]);
    expect(history.stdout).toContain("unlocked by dev");

    const ok = await cli(["deploy", "shop", "staging", "--follow"]);
    expect(ok.code).toBe(0);
  });

  it("refuses a lock without a reason as a usage error, and a hostile SHA with a clear code", {
    timeout: 120_000,
  }, async () => {
    const usage = await cli(["commit", "lock", "shop", t.repo.head]);
    expect(usage.code).toBe(2);
    const hostile = await cli(["commit", "lock", "shop", "$(touch x)", "--reason", "x"]);
    expect(hostile.code).toBe(1);
    expect(hostile.stderr).toContain("E_INVALID_REF");
  });
});
