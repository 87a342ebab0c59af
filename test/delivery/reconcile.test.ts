import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import Database from "better-sqlite3";
import { afterEach, describe, expect, it } from "vitest";
import { resolveSettings } from "../../src/config/settings.js";
import { environmentRevision } from "../../src/domain/app-revision.js";
import { type RunningServer, startServer } from "../../src/server/start-server.js";
import type { Store } from "../../src/store/store.js";
import { BACKENDS } from "../helpers/databases.js";
import { startTurnout, type TestTurnout } from "../helpers/turnout.js";
import { until } from "../helpers/wait.js";

/**
 * Auto-deploy reconciles each auto_deploy environment to its desired state
 * (branch heads + the settings decided for it) on start, on unlock, when the
 * configuration changes and periodically, so a change made while the
 * environment was locked or no server ran is deployed — once.
 */
const AUTO = (say: string, extra = "") => `repo: "{repo}"
poll_interval: 1h
${extra}
environments:
  staging:
    branch: main
    auto_deploy: true
    deploy:
      provider: shell
      script: |
        echo "${say} $(cat VERSION)"
`;

async function deploysOf(store: Store, env = "staging") {
  return (await store.deploys.list({ app: "shop", env, limit: 100 })).reverse();
}

async function settle(store: Store) {
  await until(
    async () =>
      (await deploysOf(store)).every((d) => ["succeeded", "failed", "cancelled"].includes(d.status)),
    20_000,
    "deploys finished",
  );
}

async function logOf(store: Store, id: number): Promise<string> {
  return (await store.logs.read(id, 0)).chunks.map((c) => c.text).join("");
}

describe("auto-deploy reconcile", () => {
  let t: TestTurnout;
  /** Servers started besides t's own (restarts, a second process): closed before t. */
  let others: RunningServer[] = [];
  afterEach(async () => {
    for (const server of others) await server.close();
    others = [];
    await t?.stop();
  });

  /** Stops t's server and starts it again on the same data, with `environment` if given. */
  async function restart(environment?: Record<string, string>): Promise<RunningServer> {
    await t.server.close();
    const settings = environment
      ? resolveSettings(
          {
            port: 0,
            dataDir: t.dataDir,
            configDir: t.configDir,
            ...(t.settings.databaseUrl ? { databaseUrl: t.settings.databaseUrl } : {}),
          },
          { PATH: process.env["PATH"], HOME: process.env["HOME"], TURNOUT_KILL_GRACE: "2s", ...environment },
          path.dirname(t.dataDir),
        )
      : t.settings;
    const server = await startServer(settings, {
      print: () => undefined,
      configReloadMs: 60_000,
      polling: false,
    });
    others.push(server);
    return server;
  }

  /** Reconciles and looks a few times, concurrently and one after the other. */
  async function poundOn(engine: TestTurnout["engine"]) {
    await Promise.all([
      engine.reconcileAutoDeploys(),
      engine.reconcileAutoDeploys(),
      engine.poke("shop", "poll"),
    ]);
    await engine.reconcileAutoDeploys();
    await engine.poke("shop", "poll");
  }

  describe.each(BACKENDS)("on %s", (backend) => {
    it("a configuration change made while locked deploys nothing, then exactly once on unlock", async () => {
      t = await startTurnout({ backend, manifest: AUTO("hello") });
      await t.engine.poke("shop", "poll");
      await settle(t.store);
      await t.api("PUT", "/api/v1/apps/shop/environments/staging/lock", { reason: "freeze" });
      await t.writeManifest("shop", AUTO("bonjour"));
      await poundOn(t.engine);
      expect(await deploysOf(t.store)).toHaveLength(1);

      await t.api("DELETE", "/api/v1/apps/shop/environments/staging/lock");
      await until(async () => (await deploysOf(t.store)).length === 2, 10_000, "deploy after unlock");
      await settle(t.store);
      const [first, second] = await deploysOf(t.store);
      expect(second).toMatchObject({ sha: first!.sha, user: "turnout (config)", status: "succeeded" });
      expect(second!.appRevision).toBe(environmentRevision(t.engine.config().apps.get("shop")!, "staging"));
      expect(await logOf(t.store, second!.id)).toContain("bonjour 1.0.0");
      await poundOn(t.engine);
      await settle(t.store);
      expect(await deploysOf(t.store)).toHaveLength(2);
    });

    it("a configuration change made while no server ran is deployed once after start", async () => {
      t = await startTurnout({ backend, manifest: AUTO("hello") });
      await t.engine.poke("shop", "poll");
      await settle(t.store);
      await t.server.close();
      writeFileSync(path.join(t.configDir, "shop.yaml"), AUTO("bonjour").replaceAll("{repo}", t.repo.path));
      const server = await restart();
      await until(async () => (await deploysOf(server.store)).length === 2, 10_000, "deploy after start");
      await settle(server.store);
      const second = (await deploysOf(server.store))[1]!;
      expect(second).toMatchObject({ user: "turnout (config)", status: "succeeded" });
      expect(await logOf(server.store, second.id)).toContain("bonjour 1.0.0");
      await poundOn(server.engine);
      await settle(server.store);
      expect(await deploysOf(server.store)).toHaveLength(2);
      // A restart with nothing changed changes nothing.
      await server.close();
      const again = await restart();
      await poundOn(again.engine);
      await settle(again.store);
      expect(await deploysOf(again.store)).toHaveLength(2);
    });
  });

  it("rotating a secret is a change: deployed once after the restart, the value never shown", async () => {
    t = await startTurnout({
      // bash prints the last four characters: the value itself would be masked.
      manifest: AUTO(`key ends in \${API_KEY: -4}`, "secret_env: [API_KEY]"),
      environment: { API_KEY: "first-secret-value-0001" },
    });
    await t.engine.poke("shop", "poll");
    await settle(t.store);
    const server = await restart({ API_KEY: "second-secret-value-0002" });
    await until(async () => (await deploysOf(server.store)).length === 2, 10_000, "deploy after rotation");
    await settle(server.store);
    const [first, second] = await deploysOf(server.store);
    expect(second).toMatchObject({ user: "turnout (config)", sha: first!.sha, status: "succeeded" });
    expect(await logOf(server.store, second!.id)).toContain("key ends in 0002");
    for (const deploy of [first!, second!]) {
      expect(JSON.stringify(deploy)).not.toContain("secret-value");
      expect(await logOf(server.store, deploy.id)).not.toContain("secret-value");
    }
    await poundOn(server.engine);
    expect(await deploysOf(server.store)).toHaveLength(2);
  });

  it("two server processes sharing PostgreSQL make one deploy of a change, and a server behind on the configuration undoes nothing", async () => {
    t = await startTurnout({ backend: "postgres", manifest: AUTO("hello") });
    const secondData = mkdtempSync(path.join(path.dirname(t.dataDir), "second-"));
    const second = await startServer(
      resolveSettings(
        { port: 0, dataDir: secondData, configDir: t.configDir, databaseUrl: t.settings.databaseUrl! },
        { PATH: process.env["PATH"], HOME: process.env["HOME"], TURNOUT_KILL_GRACE: "2s" },
        path.dirname(t.dataDir),
      ),
      { print: () => undefined, configReloadMs: 60_000, polling: false },
    );
    others.push(second);
    await t.engine.poke("shop", "poll");
    await settle(t.store);

    // Both see the change (each claims it) and reconcile at once.
    writeFileSync(path.join(t.configDir, "shop.yaml"), AUTO("bonjour").replaceAll("{repo}", t.repo.path));
    await Promise.all([t.server.config.refresh(), second.config.refresh()]);
    await Promise.all([poundOn(t.engine), poundOn(second.engine)]);
    await until(async () => (await deploysOf(t.store)).length === 2, 10_000, "one deploy of the change");
    await settle(t.store);
    await Promise.all([poundOn(t.engine), poundOn(second.engine)]);
    await settle(t.store);
    expect(await deploysOf(t.store)).toHaveLength(2);
    expect(await logOf(t.store, (await deploysOf(t.store))[1]!.id)).toContain("bonjour 1.0.0");

    // The second server stops running deploys and does not see the next
    // change; the first deploys it. The second one's reconciles, with its
    // older settings, must not bring them back.
    await second.engine.stop();
    writeFileSync(path.join(t.configDir, "shop.yaml"), AUTO("hola").replaceAll("{repo}", t.repo.path));
    await t.server.config.refresh();
    await until(async () => (await deploysOf(t.store)).length === 3, 10_000, "deploy of the next change");
    await settle(t.store);
    await second.engine.reconcileAutoDeploys();
    await second.engine.reconcileAutoDeploys();
    await settle(t.store);
    expect(await deploysOf(t.store)).toHaveLength(3);
    expect(await logOf(t.store, (await deploysOf(t.store))[2]!.id)).toContain("hola 1.0.0");
    rmSync(secondData, { recursive: true, force: true });
  });

  it("a redeploy that fails is not retried by reconciles; the next change is deployed", async () => {
    t = await startTurnout({ manifest: AUTO("hello") });
    await t.engine.poke("shop", "poll");
    await settle(t.store);
    await t.writeManifest("shop", AUTO('broken"; exit 3; echo "'));
    await until(async () => (await deploysOf(t.store)).length === 2, 10_000, "the failing redeploy");
    await settle(t.store);
    expect((await deploysOf(t.store))[1]!.status).toBe("failed");
    await poundOn(t.engine);
    await settle(t.store);
    expect(await deploysOf(t.store)).toHaveLength(2);
    await t.writeManifest("shop", AUTO("fixed"));
    await until(async () => (await deploysOf(t.store)).length === 3, 10_000, "the fix");
    await settle(t.store);
    expect((await deploysOf(t.store))[2]!.status).toBe("succeeded");
    await poundOn(t.engine);
    expect(await deploysOf(t.store)).toHaveLength(3);
  });

  it("rollbacks stick through reconciles and through a later settings change", async () => {
    t = await startTurnout({ manifest: AUTO("hello") });
    const v1 = t.repo.head;
    await t.engine.poke("shop", "poll");
    await settle(t.store);
    const v2 = await t.repo.commit({ VERSION: "2\n" }, "two");
    await t.engine.poke("shop", "poll");
    await settle(t.store);
    const rollback = await t.api("POST", "/api/v1/apps/shop/environments/staging/rollback", {});
    await t.waitForDeploy(rollback.body.deploy.id);
    await poundOn(t.engine);
    await settle(t.store);
    expect((await deploysOf(t.store)).map((d) => [d.trigger, d.sha])).toEqual([
      ["auto", v1],
      ["auto", v2],
      ["rollback", v1],
    ]);
    // New settings apply to the commits the rollback holds, and v2 still stays away.
    await t.writeManifest("shop", AUTO("bonjour"));
    await until(async () => (await deploysOf(t.store)).length === 4, 10_000, "settings redeploy");
    await settle(t.store);
    await poundOn(t.engine);
    await settle(t.store);
    const all = await deploysOf(t.store);
    expect(all.map((d) => [d.user, d.sha])).toEqual([
      ["turnout (poll)", v1],
      ["turnout (poll)", v2],
      ["admin", v1],
      ["turnout (config)", v1],
    ]);
    expect(await logOf(t.store, all[3]!.id)).toContain("bonjour 1.0.0");
    // A newer commit goes ahead.
    const v3 = await t.repo.commit({ VERSION: "3\n" }, "three");
    await t.engine.poke("shop", "poll");
    await settle(t.store);
    expect((await deploysOf(t.store)).at(-1)).toMatchObject({ sha: v3, status: "succeeded" });
  });

  it("a rollback to a release with older settings keeps them until the settings change again", async () => {
    t = await startTurnout({ manifest: AUTO("hello") });
    await t.engine.poke("shop", "poll");
    await settle(t.store);
    await t.writeManifest("shop", AUTO("bonjour"));
    await until(async () => (await deploysOf(t.store)).length === 2, 10_000, "settings redeploy");
    await settle(t.store);
    const rollback = await t.api("POST", "/api/v1/apps/shop/environments/staging/rollback", { to: 1 });
    const done = await t.waitForDeploy(rollback.body.deploy.id);
    expect(await logOf(t.store, done.id)).toContain("hello 1.0.0");
    await poundOn(t.engine);
    await settle(t.store);
    expect(await deploysOf(t.store)).toHaveLength(3);
    await t.writeManifest("shop", AUTO("hola"));
    await until(async () => (await deploysOf(t.store)).length === 4, 10_000, "the next settings");
    await settle(t.store);
    expect(await logOf(t.store, (await deploysOf(t.store))[3]!.id)).toContain("hola 1.0.0");
    await poundOn(t.engine);
    expect(await deploysOf(t.store)).toHaveLength(4);
  });

  it("after an upgrade, releases recorded without a per-app revision are not redeployed, and later changes are", async () => {
    t = await startTurnout({ manifest: AUTO("hello") });
    await t.engine.poke("shop", "poll");
    await settle(t.store);
    await t.server.close();
    // What a database written by the previous version looks like.
    const db = new Database(path.join(t.dataDir, "turnout.db"));
    db.exec(`update releases set app_revision = null;
             update deploys set app_revision = null;
             update environments set desired_app_revision = null, desired_at = null;`);
    db.close();
    const server = await restart();
    await poundOn(server.engine);
    await settle(server.store);
    expect(await deploysOf(server.store)).toHaveLength(1);
    await writeAndRefresh(server, AUTO("bonjour"));
    await until(async () => (await deploysOf(server.store)).length === 2, 10_000, "deploy of the change");
    await settle(server.store);
    expect(await logOf(server.store, (await deploysOf(server.store))[1]!.id)).toContain("bonjour 1.0.0");
  });

  async function writeAndRefresh(server: RunningServer, manifest: string) {
    writeFileSync(path.join(t.configDir, "shop.yaml"), manifest.replaceAll("{repo}", t.repo.path));
    await server.config.refresh();
  }
});
