import { existsSync, readFileSync } from "node:fs";
import { mkdtemp, rm, unlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runInProcess } from "../cli/helpers.js";
import { BACKENDS } from "../helpers/databases.js";
import { type AgentProcess, assertConsistent, startAgent, waitForHosts } from "../helpers/fleet.js";
import { git } from "../helpers/git-fixtures.js";
import { startTurnout, type TestTurnout } from "../helpers/turnout.js";

const FLEET = `deploy:
      provider: fleet
      hosts: { labels: { role: web } }`;

/**
 * Emergency deploys end to end: a real working tree (a clone with edits,
 * an untracked file, an ignored file, a deletion) shipped by the CLI to a
 * real agent, the record on the release, the unreviewed mark in status and
 * history until a normal deploy replaces it, and every refusal.
 */
describe.each(BACKENDS)("emergency deploys (%s)", (backend) => {
  let t: TestTurnout;
  let work: string;
  let agent: AgentProcess;
  let deployer: string;
  let tree: string;
  let base: string;

  const cli = (args: string[], token = t.adminToken) =>
    runInProcess([...args, "--server", t.url, "--token", token], { cwd: work });
  const served = (file: string) => path.join(agent.root, "shop", "current", file);
  const deploysOf = async (env: string) =>
    (await t.api("GET", `/api/v1/deploys?app=shop&env=${env}`)).body.deploys.length as number;

  beforeAll(async () => {
    t = await startTurnout({
      backend,
      manifest: `repo: "{repo}"
environments:
  staging:
    allow_emergency: deployer
    ${FLEET}
  production:
    ${FLEET}
  preview:
    allow_emergency: true
    ${FLEET}
  scripted:
    allow_emergency: true
    deploy:
      provider: shell
      command: [bash, deploy.sh, "{env}", "{sha}", "{ref}"]
`,
    });
    work = await mkdtemp(path.join(tmpdir(), "turnout-emergency-"));
    const enroll = await t.api("POST", "/api/v1/tokens", {
      name: "enroll",
      role: "agent",
      labels: ["role=web"],
    });
    agent = startAgent({
      serverUrl: t.url,
      token: enroll.body.token,
      name: "web-1",
      root: path.join(work, "web-1"),
      labels: { role: "web" },
    });
    await waitForHosts(t.api, ["web-1"]);
    deployer = (await t.api("POST", "/api/v1/tokens", { name: "dev", role: "deployer" })).body.token;

    // The live hack: a clone of what is deployed, edited in place.
    tree = path.join(work, "tree");
    await git(work, "clone", "--quiet", "--", t.repo.path, tree);
    base = (await git(tree, "rev-parse", "HEAD")).trim();
    await writeFile(path.join(tree, "VERSION"), "1.0.1-hotfix\n");
    await writeFile(path.join(tree, "NEW.txt"), "added in place\n");
    await unlink(path.join(tree, "deploy.sh"));
    await writeFile(path.join(tree, ".git", "info", "exclude"), "secret.log\n");
    await writeFile(path.join(tree, "secret.log"), "must not ship\n");
  }, 120_000);

  afterAll(async () => {
    await agent?.kill().catch(() => undefined);
    if (agent) await assertConsistent([agent.root]);
    await t?.stop();
    await rm(work, { recursive: true, force: true });
  });

  it("ships the working tree, records base, files, who and why, and marks the environment until a normal deploy", async () => {
    const first = await cli(["deploy", "shop", "staging", "--follow"]);
    expect(first.code, first.stderr).toBe(0);
    expect(
      (await t.api("GET", "/api/v1/apps/shop/environments/staging")).body.environment.unreviewed,
    ).toBeNull();

    const urgent = await cli(
      ["deploy", "shop", "staging", "--from-dir", "tree", "--reason", "checkout broken, INC-7", "--follow"],
      deployer,
    );
    expect(urgent.code, urgent.stderr + urgent.stdout).toBe(0);
    expect(urgent.stderr).toContain(`base ${base.slice(0, 12)}, 3 file(s) changed`);
    expect(readFileSync(served("VERSION"), "utf8")).toBe("1.0.1-hotfix\n");
    expect(readFileSync(served("NEW.txt"), "utf8")).toBe("added in place\n");
    expect(existsSync(served("deploy.sh"))).toBe(false);
    expect(existsSync(served("secret.log"))).toBe(false);
    expect(existsSync(served(".git"))).toBe(false);

    const env = (await t.api("GET", "/api/v1/apps/shop/environments/staging")).body.environment;
    expect(env.current.deployNumber).toBe(2);
    expect(env.unreviewed).toEqual({
      base,
      files: ["NEW.txt", "VERSION", "deploy.sh"],
      reason: "checkout broken, INC-7",
      by: "dev",
      deployNumber: 2,
    });
    const deploy = (await t.api("GET", `/api/v1/apps/shop/environments/staging/deploys/2`)).body.deploy;
    expect(deploy.sha).toBe(base);
    expect(deploy.emergency.reason).toBe("checkout broken, INC-7");
    expect(deploy.user).toBe("dev");

    const status = await cli(["status", "shop", "staging"]);
    expect(status.stdout).toMatch(
      /unreviewed\s+emergency #2 by dev; base [0-9a-f]{12}; 3 files changed; reason: checkout broken, INC-7/,
    );
    expect((await cli(["status"])).stdout).toMatch(/staging\s+#2 [0-9a-f]{12} UNREVIEWED/);
    const history = await cli(["history", "shop", "staging"]);
    expect(history.stdout).toContain("UNREVIEWED");
    expect(history.stdout.split("\n").find((l) => l.startsWith("#2"))).toContain(
      "reason: checkout broken, INC-7",
    );
    expect(history.stdout.split("\n").find((l) => l.startsWith("#1"))).not.toContain("emergency");
    const audit = await t.store.audit.list({ limit: 10 });
    expect(audit.some((a: { action: string }) => a.action === "deploy.emergency")).toBe(true);

    // A normal deploy replaces it; a rollback to the emergency release brings the mark back.
    expect((await cli(["deploy", "shop", "staging", "--follow"])).code).toBe(0);
    expect(readFileSync(served("VERSION"), "utf8")).toBe("1.0.0\n");
    expect(
      (await t.api("GET", "/api/v1/apps/shop/environments/staging")).body.environment.unreviewed,
    ).toBeNull();
    expect((await cli(["status", "shop", "staging"])).stdout).not.toContain("unreviewed");
    expect((await cli(["rollback", "shop", "staging", "--to", "2", "--follow"])).code).toBe(0);
    const back = (await t.api("GET", "/api/v1/apps/shop/environments/staging")).body.environment;
    expect(back.current.deployNumber).toBe(4);
    expect(back.unreviewed).toMatchObject({ reason: "checkout broken, INC-7", by: "dev", deployNumber: 2 });
    expect((await cli(["deploy", "shop", "staging", "--follow"])).code).toBe(0);
    expect(
      (await t.api("GET", "/api/v1/apps/shop/environments/staging")).body.environment.unreviewed,
    ).toBeNull();
  }, 180_000);

  it("is refused where the environment, the role or the provider does not permit it, and without a reason", async () => {
    const before = await Promise.all(["production", "preview", "scripted"].map(deploysOf));
    const refused = async (env: string, token: string, code: string) => {
      const result = await cli(["deploy", "shop", env, "--from-dir", "tree", "--reason", "hotfix"], token);
      expect(result.code, result.stderr).toBe(1);
      expect(result.stderr).toContain(code);
      return result.stderr;
    };
    expect(await refused("production", t.adminToken, "E_EMERGENCY_NOT_ALLOWED")).toContain(
      "does not allow emergency deploys",
    );
    expect(await refused("preview", deployer, "E_EMERGENCY_NOT_ALLOWED")).toContain("only admins");
    expect(await refused("scripted", t.adminToken, "E_PROVIDER_UNSUPPORTED")).toContain("shell provider");

    // Through the API: a reason is required; the tree comes as an uploaded artifact.
    const noReason = await t.api("POST", "/api/v1/apps/shop/environments/preview/deploys", {
      artifact: "a".repeat(64),
      emergency: { base, files: [], reason: "  " },
    });
    expect(noReason.status).toBe(400);
    expect(noReason.body.error.code).toBe("E_VALIDATION");
    const noArtifact = await t.api("POST", "/api/v1/apps/shop/environments/preview/deploys", {
      emergency: { base, reason: "hotfix" },
    });
    expect(noArtifact.body.error).toMatchObject({ code: "E_VALIDATION", details: { field: "artifact" } });
    const badFiles = await t.api("POST", "/api/v1/apps/shop/environments/preview/deploys", {
      artifact: "a".repeat(64),
      emergency: { base, files: ["../etc/passwd"], reason: "hotfix" },
    });
    expect(badFiles.body.error).toMatchObject({ code: "E_VALIDATION", details: { field: "files" } });
    const unknownKey = await t.api("POST", "/api/v1/apps/shop/environments/preview/deploys", {
      artifact: "a".repeat(64),
      emergency: { base, reason: "hotfix", approvedBy: "me" },
    });
    expect(unknownKey.status).toBe(400);

    // The CLI refuses a missing reason before uploading anything.
    const usage = await cli(["deploy", "shop", "preview", "--from-dir", "tree"]);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toContain("--reason");
    expect(await Promise.all(["production", "preview", "scripted"].map(deploysOf))).toEqual(before);
  }, 120_000);
});
