import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { makeRepo, type TestRepo } from "../helpers/git-fixtures.js";
import { startTurnout, type TestTurnout } from "../helpers/turnout.js";
import { until } from "../helpers/wait.js";

/** Multi-repo apps: a release holds every component's commit; any component's new commit auto-deploys. */
describe("multi-repo apps", () => {
  let t: TestTurnout;
  let core: TestRepo;
  let extensions: TestRepo;
  afterEach(async () => t?.stop());

  async function start() {
    t = await startTurnout({
      manifest: `repo: "{repo}"\nenvironments:\n  staging:\n    deploy:\n      provider: shell\n      command: ["true"]\n`,
    });
    core = await makeRepo(path.join(t.dataDir, "..", "core"));
    await core.commit({ VERSION: "core-1\n" }, "core one");
    extensions = await makeRepo(path.join(t.dataDir, "..", "extensions"));
    await extensions.commit({ VERSION: "ext-1\n" }, "ext one");
    await extensions.branch("stable");
    await t.writeManifest(
      "suite",
      `components:
  core: { repo: "${core.path}", branch: main }
  extensions: { repo: "${extensions.path}", branch: stable }
poll_interval: 1h
environments:
  staging:
    auto_deploy: true
    branches: { extensions: main }
    deploy:
      provider: shell
      script: |
        echo "core=$(cat core/VERSION) ext=$(cat extensions/VERSION)"
        echo "shas core=$TURNOUT_SHA_CORE ext=$TURNOUT_SHA_EXTENSIONS primary=$TURNOUT_SHA"
`,
    );
  }

  async function suiteDeploys() {
    return (await t.store.deploys.list({ app: "suite", env: "staging", limit: 50 })).reverse();
  }

  async function logOf(id: number) {
    return (await t.store.logs.read(id, 0)).chunks.map((c) => c.text).join("");
  }

  it("checks out every component at its commit and records all of them in the release", async () => {
    await start();
    const res = await t.api("POST", "/api/v1/apps/suite/environments/staging/deploys", {});
    expect(res.status).toBe(202);
    expect(res.body.deploy.components).toEqual({ core: core.head, extensions: extensions.head });
    const deploy = await t.waitForDeploy(res.body.deploy.id);
    expect(deploy.status).toBe("succeeded");
    const log = await logOf(deploy.id);
    expect(log).toContain("core=core-1 ext=ext-1");
    expect(log).toContain(`shas core=${core.head} ext=${extensions.head} primary=${core.head}`);
    const release = await t.store.releases.current("suite", "staging");
    expect(release?.components).toEqual({ core: core.head, extensions: extensions.head });
  });

  it("deploys a ref per component on request", async () => {
    await start();
    const old = extensions.head;
    await extensions.commit({ VERSION: "ext-2\n" }, "ext two");
    const res = await t.api("POST", "/api/v1/apps/suite/environments/staging/deploys", {
      refs: { extensions: old },
    });
    expect(res.body.deploy.components.extensions).toBe(old);
    expect(await logOf((await t.waitForDeploy(res.body.deploy.id)).id)).toContain("ext=ext-1");
    const bad = await t.api("POST", "/api/v1/apps/suite/environments/staging/deploys", {
      refs: { nope: "main" },
    });
    expect(bad.body.error.code).toBe("E_VALIDATION");
  });

  it("auto-deploys a new commit in any component, and the history says which component changed", async () => {
    await start();
    await t.engine.poke("suite", "poll");
    await until(async () => (await suiteDeploys())[0]?.status === "succeeded", 15_000, "first deploy");
    const ext2 = await extensions.commit({ VERSION: "ext-2\n" }, "ext two");
    await t.engine.poke("suite", "webhook");
    await until(async () => (await suiteDeploys())[1]?.status === "succeeded", 15_000, "second deploy");
    const second = (await suiteDeploys())[1]!;
    expect(second.components).toEqual({ core: core.head, extensions: ext2 });
    expect(await logOf(second.id)).toContain("core=core-1 ext=ext-2");

    const history = await t.api("GET", "/api/v1/apps/suite/environments/staging/releases");
    const [latest, first] = history.body.releases;
    expect(latest.changes).toEqual([
      { component: "extensions", from: first.components.extensions, to: ext2 },
    ]);
    expect(first.changes.map((c: { component: string }) => c.component)).toEqual(["core", "extensions"]);

    const pending = await t.api("GET", "/api/v1/apps/suite/environments/staging/pending");
    expect(pending.body.components.map((c: { commits: unknown[] }) => c.commits.length)).toEqual([0, 0]);
    const core2 = await core.commit({ VERSION: "core-2\n" }, "core two: faster");
    const core3 = await core.commit({ VERSION: "core-3\n" }, "core three");
    const preview = await t.api("GET", "/api/v1/apps/suite/environments/staging/pending");
    const corePending = preview.body.components[0];
    expect(corePending).toMatchObject({ component: "core", branch: "main", to: core3, truncated: false });
    expect(
      corePending.commits.map((c: { sha: string; subject: string; checks: null }) => [
        c.sha,
        c.subject,
        c.checks,
      ]),
    ).toEqual([
      [core3, "core three", null],
      [core2, "core two: faster", null],
    ]);
  });
});
