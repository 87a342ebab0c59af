import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { resolveSettings } from "../../src/config/settings.js";
import { type RunningServer, startServer } from "../../src/server/start-server.js";
import { ensureBuilt } from "../helpers/built-cli.js";
import { makeRepo } from "../helpers/git-fixtures.js";
import { until } from "../helpers/wait.js";

/** A configuration commit is deployed and recorded like a code change. */
describe("configuration as code drives deploys", () => {
  let root: string;
  let server: RunningServer | undefined;
  afterEach(async () => {
    await server?.close();
    rmSync(root, { recursive: true, force: true });
  });

  it("a config commit that changes an auto_deploy environment redeploys the same code with the new revision", async () => {
    root = mkdtempSync(path.join(tmpdir(), "turnout-config-deploy-"));
    const code = await makeRepo(path.join(root, "code"));
    await code.commit({ VERSION: "1\n" }, "code");
    const config = await makeRepo(path.join(root, "config"));
    const manifest = (greeting: string) => `repo: "${code.path}"
poll_interval: 1h
environments:
  staging:
    auto_deploy: true
    deploy:
      provider: shell
      script: echo "${greeting} $(cat VERSION)"
`;
    const rev1 = await config.commit({ "turnout.d/shop.yaml": manifest("hello") }, "shop");
    const settings = resolveSettings(
      { port: 0, dataDir: path.join(root, "data"), configRepo: config.path },
      { PATH: process.env["PATH"], HOME: root, TURNOUT_CONFIG_POLL: "1h" },
      root,
    );
    await ensureBuilt(); // the manifest parser's worker runs dist/
    server = await startServer(settings, {
      print: () => undefined,
      polling: false,
      configStartupWaitMs: 60_000,
    });
    const { store, engine } = server;
    const deploys = async () => (await store.deploys.list({ app: "shop", limit: 10 })).reverse();
    const logOf = async (id: number) => (await store.logs.read(id, 0)).chunks.map((c) => c.text).join("");

    await engine.poke("shop", "poll");
    await until(async () => (await deploys())[0]?.status === "succeeded", 15_000, "first deploy");
    expect((await deploys())[0]!.configRevision).toBe(rev1);

    const rev2 = await config.commit({ "turnout.d/shop.yaml": manifest("bonjour") }, "say bonjour");
    expect(await server.config.refresh()).toBe(true);
    await until(async () => (await deploys())[1]?.status === "succeeded", 15_000, "config redeploy");
    const [first, second] = await deploys();
    expect(second).toMatchObject({ trigger: "auto", sha: first!.sha, configRevision: rev2 });
    expect(await logOf(second!.id)).toContain("bonjour 1");
    const [latest, earlier] = await store.releases.history("shop", "staging");
    expect(latest!.configRevision).toBe(rev2);
    expect(earlier!.configRevision).toBe(rev1);
    expect(latest!.fingerprint).not.toBe(earlier!.fingerprint);

    // A commit breaking the app's manifest: the commit is taken, the app keeps its last valid
    // version (so its settings did not change and nothing is redeployed), and the problem is shown.
    const token = readFileSync(path.join(root, "data", "admin-token"), "utf8").trim();
    const kept = engine.config().apps.get("shop");
    const rev3 = await config.commit(
      { "turnout.d/shop.yaml": `${manifest("broken")}    nonsense: true\n` },
      "break",
    );
    expect(await server.config.refresh()).toBe(true);
    const status: any = await (
      await fetch(`${server.url}/api/v1/config`, { headers: { authorization: `Bearer ${token}` } })
    ).json();
    expect(status.revision).toBe(rev3);
    expect(status.lastError).toBeNull();
    expect(status.problems[0]).toMatchObject({
      app: "shop",
      file: `turnout.d/shop.yaml@${rev3.slice(0, 7)}`,
    });
    expect(status.problems[0].field).toMatch(/^environments\.staging/);
    expect(engine.config().apps.get("shop")).toBe(kept);
    expect(await deploys()).toHaveLength(2);
  });
});
