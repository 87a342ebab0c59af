import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { turnout } from "../helpers/built-cli.js";
import { BACKENDS } from "../helpers/databases.js";
import { startTurnout, type TestTurnout } from "../helpers/turnout.js";

/**
 * Every mutating action leaves one audit event with who (token name, id,
 * role), from where (api, cli, webhook, schedule) and on what; the API
 * filters them and the CLI lists them. Real server, real CLI process, both
 * backends.
 */
const MANIFEST = `repo: "{repo}"
environments:
  staging:
    branch: main
    auto_deploy: true
    deploy:
      provider: shell
      script: |
        echo "deploying $TURNOUT_SHA"
      timeout: 2m
  production:
    branch: main
    deploy:
      provider: shell
      command: [bash, deploy.sh, "{env}", "{sha}", "{ref}"]
      timeout: 2m
`;

describe.each(BACKENDS)("audit trail (%s)", (backend) => {
  let t: TestTurnout | undefined;
  afterEach(async () => {
    await t?.stop();
    t = undefined;
  });

  it("records each mutation with actor, role, source and target; filters and lists them", async () => {
    t = await startTurnout({ backend, manifest: MANIFEST });
    const home = mkdtempSync(path.join(tmpdir(), "turnout-audit-home-"));
    const cli = (...argv: string[]) =>
      turnout([...argv, "--server", t!.url, "--token", t!.adminToken], { env: { HOME: home }, cwd: home });

    // A deployer token, made by the admin over the API.
    const made = await t.api("POST", "/api/v1/tokens", { name: "dev", role: "deployer" });
    expect(made.status).toBe(201);
    const dev = made.body.token as string;
    const devId = made.body.info.id;

    // API: a deploy by the deployer.
    const viaApi = await t.api("POST", "/api/v1/apps/shop/environments/production/deploys", {}, dev);
    expect(viaApi.status).toBe(202);
    await t.waitForDeploy(viaApi.body.deploy.id);
    // CLI: lock, deploy a newer commit with force, unlock, roll back to the first.
    await t.repo.commit({ VERSION: "1.0.1\n" }, "fix");
    expect((await cli("lock", "shop", "production", "--reason", "release freeze")).code).toBe(0);
    const forced = await cli("deploy", "shop", "production", "--force", "--json");
    expect(forced.code).toBe(0);
    const forcedDeploy = JSON.parse(forced.stdout).deploy;
    await t.waitForDeploy(forcedDeploy.id);
    expect((await cli("unlock", "shop", "production")).code).toBe(0);
    const rolled = await cli("rollback", "shop", "production", "--to", "1", "--json");
    expect(rolled.code, rolled.stderr).toBe(0);
    await t.waitForDeploy(JSON.parse(rolled.stdout).deploy.id);
    // Webhook-like: a new commit, noticed after a poke from a webhook, auto-deploys staging.
    await t.repo.commit({ VERSION: "1.1.0\n" }, "feature");
    await t.engine.poke("shop", "webhook");
    // A token revoked, and a configuration reload.
    expect((await cli("token", "revoke", "dev")).code).toBe(0);
    await t.writeManifest(
      "blog",
      `repo: "{repo}"\nenvironments:\n  prod:\n    deploy: { provider: shell, command: [echo, hi] }\n`,
    );

    const events = async (query = "") => {
      const res = await t!.api("GET", `/api/v1/audit?limit=500${query}`);
      expect(res.status).toBe(200);
      return res.body.events as any[];
    };
    // The reload is recorded as it is told (not awaited by the refresh): wait for it.
    for (let i = 0; i < 400; i++) {
      if ((await events("&action=config.reload")).length > 0) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    const all = await events();
    const find = (action: string, where: (e: any) => boolean = () => true) =>
      all.find((e) => e.action === action && where(e));

    expect(find("token.create", (e) => e.target === "dev")).toMatchObject({
      actor: "admin",
      role: "admin",
      source: "api",
      details: { name: "dev", role: "deployer" },
    });
    expect(find("deploy", (e) => e.target === "shop/production#1")).toMatchObject({
      actor: "dev",
      actorId: devId,
      role: "deployer",
      source: "api",
      app: "shop",
      env: "production",
      details: { trigger: "api", force: false },
    });
    expect(find("lock")).toMatchObject({
      actor: "admin",
      source: "cli",
      target: "shop/production",
      details: { reason: "release freeze" },
    });
    expect(find("deploy", (e) => e.target === forcedDeploy.label)).toMatchObject({
      source: "cli",
      details: { force: true, ignoredSafeties: ["lock"], trigger: "cli" },
    });
    expect(find("unlock")).toMatchObject({ source: "cli", target: "shop/production" });
    expect(find("rollback")).toMatchObject({ source: "cli", actor: "admin", app: "shop", env: "production" });
    expect(find("token.revoke")).toMatchObject({ source: "cli", target: "dev", details: { name: "dev" } });
    expect(find("config.reload")).toMatchObject({
      actor: "turnout (config)",
      source: "schedule",
      actorId: null,
      details: { added: ["blog"] },
    });
    // The auto-deploy may still be on its way: it is there once it was admitted.
    let auto: any;
    for (let i = 0; i < 400 && !auto; i++) {
      auto = (await events("&app=shop&env=staging")).find((e) => e.action === "deploy");
      if (!auto) await new Promise((r) => setTimeout(r, 50));
    }
    expect(auto).toMatchObject({ source: "webhook", details: { trigger: "webhook" }, actorId: null });
    // No token value anywhere in the trail.
    expect(JSON.stringify(all)).not.toContain(dev);
    expect(JSON.stringify(all)).not.toContain(t.adminToken);

    // Filters: each narrows to what it says.
    expect((await events("&source=cli")).every((e) => e.source === "cli")).toBe(true);
    expect((await events("&source=cli")).map((e) => e.action).sort()).toEqual(
      ["deploy", "lock", "rollback", "token.revoke", "unlock"].sort(),
    );
    expect((await events("&actor=dev")).map((e) => e.action)).toEqual(["deploy"]);
    expect((await events("&action=lock&app=shop&env=production")).map((e) => e.target)).toEqual([
      "shop/production",
    ]);
    const future = new Date(Date.now() + 3_600_000).toISOString();
    expect(await events(`&since=${encodeURIComponent(future)}`)).toEqual([]);
    expect((await events(`&until=${encodeURIComponent(future)}`)).length).toBe(all.length);
    // Pages: newest first, a cursor to the next, no event twice.
    const first = await t.api("GET", "/api/v1/audit?limit=2");
    expect(first.body.events).toHaveLength(2);
    expect(first.body.events[0].id).toBeGreaterThan(first.body.events[1].id);
    const second = await t.api("GET", `/api/v1/audit?limit=2&cursor=${first.body.nextCursor}`);
    expect(second.body.events[0].id).toBeLessThan(first.body.events[1].id);

    // Bad filters: clear errors, stable codes.
    const badSource = await t.api("GET", "/api/v1/audit?source=fax");
    expect(badSource.status).toBe(400);
    const badTime = await t.api("GET", "/api/v1/audit?since=yesterday");
    expect(badTime.status).toBe(400);
    expect(badTime.body.error.code).toBe("E_VALIDATION");

    // The CLI lists them with the same filters.
    const listed = await cli("audit", "shop", "production", "--source", "cli", "--json");
    expect(listed.code).toBe(0);
    expect(
      JSON.parse(listed.stdout)
        .events.map((e: any) => e.action)
        .sort(),
    ).toEqual(["deploy", "lock", "rollback", "unlock"].sort());
    const table = await cli("audit", "shop", "--action", "lock", "--since", "1h");
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(/^TIME\s+ACTOR\s+SOURCE\s+ACTION\s+TARGET\s+DETAILS/);
    expect(table.stdout).toMatch(/admin\s+cli\s+lock\s+shop\/production\s+reason=release freeze/);
    const usage = await cli("audit", "--since", "last tuesday");
    expect(usage.code).toBe(2);
    expect(usage.stderr).toContain("expected a time such as 2h");
  }, 120_000);
});
