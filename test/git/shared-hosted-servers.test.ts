// biome-ignore-all lint/suspicious/noExplicitAny: deploys and private engine parts are read untyped here
import { execFile } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterEach, describe, expect, it } from "vitest";
import { createTestDatabase, type TestDatabase } from "../helpers/databases.js";
import { fixtureGitEnv, makeRepo, type TestRepo } from "../helpers/git-fixtures.js";
import { startTurnout, type TestTurnout } from "../helpers/turnout.js";
import { until } from "../helpers/wait.js";

const execFileAsync = promisify(execFile);

/**
 * Hosted repositories on PostgreSQL: two (or three) real servers on loopback
 * ports, each with its own data directory, one database. A push to one is
 * what every other one serves and deploys, force pushes and deletions
 * included; pushes racing through two servers leave one history.
 */
const MANIFEST = `hosted: true
poll_interval: 1h
environments:
  staging:
    auto_deploy: true
    deploy:
      provider: shell
      script: echo "pushed app says $(cat MESSAGE)"
`;

interface Servers {
  database: TestDatabase;
  roots: string[];
  running: TestTurnout[];
  work: string;
}

let servers: Servers | undefined;

afterEach(async () => {
  if (!servers) return;
  for (const t of servers.running) await t.stop().catch(() => undefined);
  await servers.database.drop();
  for (const root of [...servers.roots, servers.work]) await rm(root, { recursive: true, force: true });
  servers = undefined;
});

async function setUp(): Promise<Servers> {
  servers = {
    database: await createTestDatabase("postgres"),
    roots: [],
    running: [],
    work: await mkdtemp(path.join(tmpdir(), "turnout-ha-work-")),
  };
  return servers;
}

/** A server on the shared database; `root` again restarts an earlier one. */
async function server(s: Servers, root?: string, adminToken?: string): Promise<TestTurnout> {
  const dir = root ?? (await mkdtemp(path.join(tmpdir(), "turnout-ha-")));
  if (!root) s.roots.push(dir);
  if (adminToken) {
    // Only the first server of a database writes the admin token into its data directory.
    mkdirSync(path.join(dir, "data"), { recursive: true, mode: 0o700 });
    writeFileSync(path.join(dir, "data", "admin-token"), `${adminToken}\n`, { mode: 0o600 });
  }
  const t = await startTurnout({ manifest: MANIFEST, reuse: { root: dir, database: s.database } });
  s.running.push(t);
  return t;
}

function rootOf(t: TestTurnout): string {
  return path.dirname(t.dataDir);
}

function remote(t: TestTurnout): string {
  return `${t.url.replace("http://", `http://x:${t.adminToken}@`)}/git/shop.git`;
}

async function gitIn(cwd: string, ...args: string[]): Promise<{ ok: boolean; out: string }> {
  try {
    const { stdout, stderr } = await execFileAsync("git", args, { cwd, env: fixtureGitEnv() });
    return { ok: true, out: `${stdout}${stderr}` };
  } catch (error) {
    const e = error as { stdout?: string; stderr?: string };
    return { ok: false, out: `${e.stdout ?? ""}${e.stderr ?? ""}` };
  }
}

/** The refs a server advertises for `shop` (ls-remote through its HTTP endpoint). */
async function refsOn(t: TestTurnout, cwd: string): Promise<Record<string, string>> {
  const result = await gitIn(cwd, "ls-remote", "--", remote(t));
  expect(result.ok, result.out).toBe(true);
  const refs: Record<string, string> = {};
  for (const line of result.out.split("\n")) {
    const [sha, ref] = line.split("\t");
    // Peeled tags (`v1^{}`) are what the advertisement adds, not refs.
    if (sha && ref?.startsWith("refs/") && !ref.endsWith("^{}")) refs[ref] = sha;
  }
  return refs;
}

/** `git push [flags] -- <server's URL> <refspecs…>`; flags are the arguments that start with `--`. */
async function push(repo: TestRepo | string, t: TestTurnout, ...args: string[]) {
  const flags = args.filter((a) => a.startsWith("--"));
  const refspecs = args.filter((a) => !a.startsWith("--"));
  return gitIn(typeof repo === "string" ? repo : repo.path, "push", ...flags, "--", remote(t), ...refspecs);
}

describe("hosted repositories shared through PostgreSQL", () => {
  it("a push to A is deployed by B, and cloned from B", async () => {
    const s = await setUp();
    const a = await server(s);
    const b = await server(s, undefined, a.adminToken);
    // Only B takes work: the deploy A's push starts must run on B.
    (a.engine as any).worker.stopClaiming();

    const local = await makeRepo(path.join(s.work, "local"));
    const sha = await local.commit({ MESSAGE: "hello through A\n" }, "first push");
    const pushed = await push(local, a, "main");
    expect(pushed.ok, pushed.out).toBe(true);

    await until(
      async () => (await a.store.deploys.list({ app: "shop", limit: 5 })).length === 1,
      20_000,
      "the deploy of the push",
    );
    const [deploy] = await a.store.deploys.list({ app: "shop", limit: 5 });
    expect(deploy).toMatchObject({ trigger: "push", sha });
    const done = await b.waitForDeploy(deploy!.id, 60_000);
    expect(done.status, done.errorMessage ?? "").toBe("succeeded");
    const log = (await b.store.logs.read(done.id, 0)).chunks.map((c: any) => c.text).join("");
    expect(log).toContain("pushed app says hello through A");
    expect(a.engine.runningDeploys()).toEqual([]);

    const clone = path.join(s.work, "clone-from-b");
    const cloned = await gitIn(s.work, "clone", "--quiet", "--", remote(b), clone);
    expect(cloned.ok, cloned.out).toBe(true);
    expect((await gitIn(clone, "rev-parse", "HEAD")).out.trim()).toBe(sha);
    expect((await gitIn(clone, "show", "HEAD:MESSAGE")).out).toBe("hello through A\n");
  }, 240_000);

  it("force pushes, new branches, tags and deletions propagate; a restarted server and a new one catch up", async () => {
    const s = await setUp();
    const a = await server(s);
    const b = await server(s, undefined, a.adminToken);
    const local = await makeRepo(path.join(s.work, "local"));
    await local.commit({ MESSAGE: "one\n" }, "one");
    const two = await local.commit({ MESSAGE: "two\n" }, "two");
    await local.branch("feature");
    await local.tag("v1", true);
    expect((await push(local, a, "main", "feature", "v1")).ok).toBe(true);
    const tagObject = (await gitIn(local.path, "rev-parse", "v1")).out.trim();
    expect(await refsOn(b, s.work)).toEqual({
      "refs/heads/main": two,
      "refs/heads/feature": two,
      "refs/tags/v1": tagObject,
    });

    // A force push to B replaces main on A; a deletion through B removes feature on A.
    await local.git("reset", "--hard", "HEAD~1");
    const rewritten = await local.commit({ MESSAGE: "rewritten\n" }, "rewritten");
    const forced = await push(local, b, "--force", "main");
    expect(forced.ok, forced.out).toBe(true);
    expect((await push(local, b, "--delete", "feature")).ok).toBe(true);
    expect(await refsOn(a, s.work)).toEqual({ "refs/heads/main": rewritten, "refs/tags/v1": tagObject });

    // B goes away; two pushes to A (one a force push back to a known commit) meanwhile.
    const rootB = rootOf(b);
    await b.stop();
    s.running.splice(s.running.indexOf(b), 1);
    const three = await local.commit({ MESSAGE: "three\n" }, "three");
    expect((await push(local, a, "main")).ok).toBe(true);
    expect((await push(local, a, "--force", `${two}:refs/heads/main`)).ok).toBe(true);
    expect((await push(local, a, `${three}:refs/heads/later`)).ok).toBe(true);

    const again = await server(s, rootB);
    const c = await server(s, undefined, a.adminToken);
    const expected = { "refs/heads/main": two, "refs/heads/later": three, "refs/tags/v1": tagObject };
    expect(await refsOn(again, s.work)).toEqual(expected);
    expect(await refsOn(c, s.work)).toEqual(expected);
    const clone = path.join(s.work, "clone-from-c");
    expect((await gitIn(s.work, "clone", "--quiet", "--branch", "later", "--", remote(c), clone)).ok).toBe(
      true,
    );
    expect((await gitIn(clone, "show", "HEAD:MESSAGE")).out).toBe("three\n");
  }, 240_000);

  it("pushes racing through A and B leave one history: one wins, the other is rejected as git would", async () => {
    const s = await setUp();
    const a = await server(s);
    const b = await server(s, undefined, a.adminToken);
    const first = await makeRepo(path.join(s.work, "first"));
    const base = await first.commit({ MESSAGE: "base\n" }, "base");
    expect((await push(first, a, "main")).ok).toBe(true);
    const second = path.join(s.work, "second");
    expect((await gitIn(s.work, "clone", "--quiet", "--", remote(b), second)).ok).toBe(true);

    for (let round = 0; round < 3; round++) {
      await first.commit({ MESSAGE: `first ${round}\n` }, `first ${round}`);
      const theirs = path.join(second, "MESSAGE");
      writeFileSync(theirs, `second ${round}\n`);
      await gitIn(second, "commit", "--quiet", "-am", `second ${round}`);
      const [viaA, viaB] = await Promise.all([push(first, a, "main"), push(second, b, "main")]);
      // Both were based on the same commit: exactly one lands.
      expect([viaA.ok, viaB.ok].filter(Boolean), `${viaA.out}\n---\n${viaB.out}`).toHaveLength(1);
      const winner = viaA.ok
        ? (await gitIn(first.path, "rev-parse", "HEAD")).out.trim()
        : (await gitIn(second, "rev-parse", "HEAD")).out.trim();
      expect((await refsOn(a, s.work))["refs/heads/main"]).toBe(winner);
      expect((await refsOn(b, s.work))["refs/heads/main"]).toBe(winner);
      // Both sides start the next round from the winner.
      for (const dir of [first.path, second]) {
        expect((await gitIn(dir, "fetch", "--quiet", "--", remote(a), "main")).ok).toBe(true);
        await gitIn(dir, "reset", "--quiet", "--hard", "FETCH_HEAD");
      }
    }
    // The history is a line from base through one winner per round.
    const clone = path.join(s.work, "final");
    expect((await gitIn(s.work, "clone", "--quiet", "--", remote(b), clone)).ok).toBe(true);
    const history = (await gitIn(clone, "rev-list", "--parents", "HEAD")).out.trim().split("\n");
    expect(history).toHaveLength(4);
    expect(history.every((line) => line.split(" ").length <= 2)).toBe(true);
    expect(history.at(-1)).toBe(base);
  }, 240_000);
});
