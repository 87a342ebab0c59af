import { execFile } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ensureHostedRepo, readRefs } from "../../src/git/hosted-repos.js";
import { SharedHostedRepos } from "../../src/git/shared-hosted-repos.js";
import type { HostedRepoLog } from "../../src/store/hosted-repo-log.js";
import { useTestStore } from "../helpers/databases.js";
import { fixtureGitEnv, makeRepo, type TestRepo } from "../helpers/git-fixtures.js";
import { until } from "../helpers/wait.js";

const execFileAsync = promisify(execFile);

/**
 * The shared log of one hosted repository, on the machine's PostgreSQL, with
 * copies in separate directories standing for separate servers: compaction,
 * a copy that predates the log, and a push that cannot be recorded.
 */
describe("SharedHostedRepos", () => {
  const store = useTestStore("postgres");
  let root: string;
  let work: TestRepo;
  const reports: string[] = [];

  beforeEach(async () => {
    root = await mkdtemp(path.join(tmpdir(), "turnout-shared-"));
    work = await makeRepo(path.join(root, "work"));
    reports.length = 0;
  });
  afterEach(async () => rm(root, { recursive: true, force: true }));

  /** One server's copy of `shop`: its own `hosted/` directory. */
  function copy(name: string, log: Pick<HostedRepoLog, "head" | "entries" | "bundle" | "size" | "locked">) {
    const hostedDir = path.join(root, name, "hosted");
    const shared = new SharedHostedRepos({
      log,
      hostedDir,
      report: (m) => reports.push(m),
      compactAfter: 3,
    });
    return { shared, repo: path.join(hostedDir, "shop.git") };
  }

  /** A real `git push` of `refspec` into the copy, as one shared push. */
  async function pushTo(target: ReturnType<typeof copy>, ...refspec: string[]) {
    await ensureHostedRepo(target.repo);
    return target.shared.push(target.repo, "tester", () =>
      execFileAsync("git", ["push", "--quiet", "--", target.repo, ...refspec], {
        cwd: work.path,
        env: fixtureGitEnv(),
      }),
    );
  }

  it("compacts the log into one full bundle; copies behind it and new copies still catch up", async () => {
    const a = copy("a", store().hostedRepos);
    const behind = copy("behind", store().hostedRepos);
    for (let i = 1; i <= 2; i++) {
      await work.commit({ N: `${i}\n` }, `push ${i}`);
      await pushTo(a, "main");
    }
    await behind.shared.catchUp(behind.repo);
    expect(Object.fromEntries(await readRefs(behind.repo))).toEqual({ "refs/heads/main": work.head });

    for (let i = 3; i <= 5; i++) {
      await work.commit({ N: `${i}\n` }, `push ${i}`);
      await pushTo(a, "main");
    }
    // The fourth entry made the log longer than three: it became one bundle of everything.
    await until(
      async () => (await store().hostedRepos.entries("shop", 0))[0]?.full === true,
      10_000,
      "compaction",
    );
    // (The compaction after the fourth push may run after the fifth: then the fifth is the full one.)
    const entries = await store().hostedRepos.entries("shop", 0);
    expect(entries[0]!.full).toBe(true);
    expect(entries.at(-1)!.seq).toBe(5);
    expect(entries.length).toBeLessThanOrEqual(2);
    expect(entries.slice(1).every((e) => !e.full)).toBe(true);
    expect(reports.some((r) => r.includes("compacted the shared log"))).toBe(true);

    const fresh = copy("fresh", store().hostedRepos);
    for (const target of [behind, fresh]) {
      await target.shared.catchUp(target.repo);
      expect(Object.fromEntries(await readRefs(target.repo))).toEqual({ "refs/heads/main": work.head });
      const { stdout } = await execFileAsync("git", ["rev-list", "--count", "main"], {
        env: { ...fixtureGitEnv(), GIT_DIR: target.repo },
      });
      expect(stdout.trim()).toBe("5");
      await execFileAsync("git", ["fsck", "--no-progress"], {
        env: { ...fixtureGitEnv(), GIT_DIR: target.repo },
      });
    }
  });

  it("a copy filled before the log began starts it; the others get its refs", async () => {
    const old = copy("old", store().hostedRepos);
    await ensureHostedRepo(old.repo);
    await work.commit({ N: "1\n" }, "before the database was shared");
    await work.tag("v1");
    await execFileAsync("git", ["push", "--quiet", "--", old.repo, "main", "v1"], {
      cwd: work.path,
      env: fixtureGitEnv(),
    });
    await old.shared.catchUp(old.repo);
    expect((await store().hostedRepos.head("shop"))?.head).toBe(1);

    const other = copy("other", store().hostedRepos);
    await other.shared.catchUp(other.repo);
    expect(Object.fromEntries(await readRefs(other.repo))).toEqual({
      "refs/heads/main": work.head,
      "refs/tags/v1": work.head,
    });
  });

  it("a push the log cannot record leaves the copy's refs as they were and fails", async () => {
    const a = copy("a", store().hostedRepos);
    await work.commit({ N: "1\n" }, "recorded");
    await pushTo(a, "main");
    const recorded = work.head;

    const real = store().hostedRepos;
    const failing: Pick<HostedRepoLog, "head" | "entries" | "bundle" | "size" | "locked"> = {
      head: (repo) => real.head(repo),
      entries: (repo, after) => real.entries(repo, after),
      bundle: (repo, seq) => real.bundle(repo, seq),
      size: (repo) => real.size(repo),
      locked: (repo, waitMs, fn) =>
        real.locked(repo, waitMs, (log) =>
          fn({
            logId: log.logId,
            head: log.head,
            entries: log.entries,
            bundle: log.bundle,
            compact: log.compact,
            append: async () => {
              throw new Error("the database went away");
            },
          }),
        ),
    };
    const broken = {
      shared: new SharedHostedRepos({ log: failing, hostedDir: path.dirname(a.repo), report: () => {} }),
      repo: a.repo,
    };
    await work.commit({ N: "2\n" }, "lost");
    await expect(pushTo(broken, "main")).rejects.toThrow("the database went away");
    expect(Object.fromEntries(await readRefs(a.repo))).toEqual({ "refs/heads/main": recorded });
    expect((await store().hostedRepos.head("shop"))?.head).toBe(1);
  });
});

describe("pushes through two servers at once", () => {
  const store = useTestStore("postgres");
  let root: string;
  afterEach(async () => rm(root, { recursive: true, force: true }));

  it("wait for each other; one that waits too long is refused with E_UNAVAILABLE and changes nothing", async () => {
    root = await mkdtemp(path.join(tmpdir(), "turnout-shared-lock-"));
    const work = await makeRepo(path.join(root, "work"));
    await work.commit({ N: "1\n" }, "one");
    const a = new SharedHostedRepos({
      log: store().hostedRepos,
      hostedDir: path.join(root, "a"),
      report: () => {},
    });
    const b = new SharedHostedRepos({
      log: store().hostedRepos,
      hostedDir: path.join(root, "b"),
      report: () => {},
      lockWaitMs: 300,
    });
    const repoA = path.join(root, "a", "shop.git");
    const repoB = path.join(root, "b", "shop.git");
    await ensureHostedRepo(repoA);
    await ensureHostedRepo(repoB);
    const gitPush = (repo: string) =>
      execFileAsync("git", ["push", "--quiet", "--", repo, "main"], { cwd: work.path, env: fixtureGitEnv() });

    let release!: () => void;
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    let entered!: () => void;
    const inside = new Promise<void>((resolve) => {
      entered = resolve;
    });
    const slow = a.push(repoA, "slow", async () => {
      entered();
      await held;
      return gitPush(repoA);
    });
    await inside;
    // A's push holds the repository: B's gives up after its 300 ms.
    await expect(b.push(repoB, "impatient", () => gitPush(repoB))).rejects.toMatchObject({
      code: "E_UNAVAILABLE",
    });
    expect(Object.fromEntries(await readRefs(repoB))).toEqual({});
    release();
    await slow;
    expect((await store().hostedRepos.head("shop"))?.head).toBe(1);
    // B then catches up to A's push before taking its own.
    await work.commit({ N: "2\n" }, "two");
    await b.push(repoB, "patient", () => gitPush(repoB));
    expect((await store().hostedRepos.head("shop"))?.head).toBe(2);
    await a.catchUp(repoA);
    expect(Object.fromEntries(await readRefs(repoA))).toEqual({ "refs/heads/main": work.head });
  });
});

describe("SharedHostedRepos.keyOf", () => {
  it("names copies under hosted/ as the log does, and nothing outside it", () => {
    const unused = {} as Pick<HostedRepoLog, "head" | "entries" | "bundle" | "size" | "locked">;
    const shared = new SharedHostedRepos({ log: unused, hostedDir: "/data/hosted", report: () => {} });
    expect(shared.keyOf("/data/hosted/shop.git")).toBe("shop");
    expect(shared.keyOf("/data/hosted/suite/api.git")).toBe("suite/api");
    expect(shared.keyOf("/data/git/0123.git")).toBeUndefined();
    expect(shared.keyOf("/data/hosted/../elsewhere.git")).toBeUndefined();
    expect(shared.keyOf("/srv/repos/shop")).toBeUndefined();
  });
});
