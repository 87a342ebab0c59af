import { execFile } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterEach, describe, expect, it } from "vitest";
import { hmacSha256Header } from "../../src/http/webhooks/signatures.js";
import { BACKENDS } from "../helpers/databases.js";
import { makeRepo, type TestRepo } from "../helpers/git-fixtures.js";
import { startTurnout, type TestTurnout } from "../helpers/turnout.js";
import { until } from "../helpers/wait.js";

const execFileAsync = promisify(execFile);

describe("push-to-deploy", () => {
  let t: TestTurnout;
  let work: string;
  afterEach(async () => {
    await t?.stop();
    await rm(work, { recursive: true, force: true });
  });

  it("a git push to a tracked branch of a hosted app starts a deploy of the pushed commit", async () => {
    t = await startTurnout({
      manifest: `hosted: true
poll_interval: 1h
environments:
  staging:
    auto_deploy: true
    deploy:
      provider: shell
      script: echo "pushed app says $(cat MESSAGE)"
`,
    });
    work = await mkdtemp(path.join(tmpdir(), "turnout-push-"));
    const local = await makeRepo(path.join(work, "local"));
    const sha = await local.commit({ MESSAGE: "hello from a push\n" }, "first push");
    const token = (
      await t.api("POST", "/api/v1/tokens", { name: "pusher", role: "deployer", apps: ["shop"] })
    ).body.token;
    const url = `${t.url.replace("http://", `http://x:${token}@`)}/git/shop.git`;
    await execFileAsync("git", ["-C", local.path, "push", url, "main"], {
      env: { PATH: process.env["PATH"], HOME: work, GIT_TERMINAL_PROMPT: "0" },
    });
    await until(
      async () => (await t.store.deploys.list({ app: "shop", limit: 5 })).length === 1,
      15_000,
      "deploy after push",
    );
    const [deploy] = await t.store.deploys.list({ app: "shop", limit: 5 });
    expect(deploy).toMatchObject({ trigger: "push", sha, env: "staging" });
    const done = await t.waitForDeploy(deploy!.id);
    expect(done.status).toBe("succeeded");
    const log = (await t.store.logs.read(done.id, 0)).chunks.map((c) => c.text).join("");
    expect(log).toContain("pushed app says hello from a push");
  });
});

describe.each(BACKENDS)("a storm of webhooks on %s", (backend) => {
  let t: TestTurnout;
  afterEach(async () => t?.stop());

  it("200 deliveries for 20 apps within a second: every app fetched, no deploy duplicated", async () => {
    t = await startTurnout({ backend, environment: { HOOK_SECRET: "storm-secret" } });
    const repos: TestRepo[] = [];
    for (let i = 0; i < 20; i++) {
      const repo = await makeRepo(path.join(t.dataDir, "..", `storm-${i}`));
      await repo.commit({ VERSION: `${i}\n` }, "one");
      repos.push(repo);
      await t.writeManifest(
        `storm-${i}`,
        `repo: "${repo.path}"
poll_interval: 1h
webhook: { secret_env: HOOK_SECRET }
environments:
  production:
    auto_deploy: true
    deploy:
      provider: shell
      command: ["true"]
`,
      );
    }
    const deliveries = Array.from({ length: 200 }, (_, n) => {
      const app = `storm-${n % 20}`;
      const body = JSON.stringify({ ref: "refs/heads/main", repository: { clone_url: repos[n % 20]!.path } });
      return fetch(`${t.url}/api/v1/webhooks/generic?app=${app}`, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          "x-turnout-signature": hmacSha256Header("storm-secret", body),
          "x-turnout-delivery": `delivery-${n}`,
        },
        body,
      });
    });
    const responses = await Promise.all(deliveries);
    expect(responses.map((r) => r.status).every((s) => s === 202)).toBe(true);
    await until(
      async () => {
        const all = await t.store.deploys.list({ limit: 500 });
        return all.length >= 20 && all.every((d) => d.status === "succeeded");
      },
      120_000,
      "one deploy per app",
    );
    const all = await t.store.deploys.list({ limit: 500 });
    const perApp = new Map<string, string[]>();
    for (const d of all) perApp.set(d.app, [...(perApp.get(d.app) ?? []), d.sha]);
    expect([...perApp.keys()].sort()).toEqual(repos.map((_, i) => `storm-${i}`).sort());
    for (const [app, shas] of perApp) expect(shas, app).toEqual([repos[Number(app.split("-")[1])]!.head]);
    // Twenty clones, fetches and deploys: about 40 s on SQLite on a quiet 2-core machine, so room for a busy one.
  }, 150_000);
});
