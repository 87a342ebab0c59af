import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import http from "node:http";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, beforeEach, describe, expect, it, type MockInstance, vi } from "vitest";
import { withGitLog } from "../git/git-spy.js";
import { fixtureGitEnv, makeRepo, type TestRepo } from "../helpers/git-fixtures.js";
import { startTurnout, type TestTurnout } from "../helpers/turnout.js";

/**
 * Push-to-deploy against the real server with the real git client: smart
 * HTTP through `git http-backend`, Turnout tokens as Basic credentials, and
 * refusals git shows to the person pushing.
 */
const execFileAsync = promisify(execFile);

const HOSTED_MANIFEST = `hosted: true
environments:
  staging:
    branch: main
    deploy:
      provider: shell
      command: ["true"]
  production:
    branch: release
    deploy:
      provider: shell
      command: ["true"]
`;

const SUITE_MANIFEST = `components:
  api:
    hosted: true
  web:
    repo: "{repo}"
environments:
  staging:
    branches: { api: main, web: main }
    deploy:
      provider: shell
      command: ["true"]
`;

let t: TestTurnout;
let home: string;
let work: TestRepo;
let port: number;
let poke: MockInstance;
const tokens: Record<string, string> = {};

async function makeToken(name: string, role: string, apps?: string[]): Promise<string> {
  const res = await t.api("POST", "/api/v1/tokens", { name, role, ...(apps ? { apps } : {}) });
  expect(res.status).toBe(201);
  return res.body.token as string;
}

function remote(repo: string, token?: string): string {
  return `http://${token === undefined ? "" : `x:${token}@`}127.0.0.1:${port}/git/${repo}`;
}

/** The real git client, never prompting, with a 20 s ceiling so a hang fails instead of stalling. */
async function gitCli(
  cwd: string,
  ...args: string[]
): Promise<{ ok: boolean; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await execFileAsync("git", args, {
      cwd,
      env: { ...fixtureGitEnv(), HOME: home, GIT_ASKPASS: "", SSH_ASKPASS: "" },
      timeout: 20_000,
    });
    return { ok: true, stdout, stderr };
  } catch (error) {
    const e = error as { stdout?: string; stderr?: string; killed?: boolean };
    if (e.killed) throw new Error(`git ${args.join(" ")} hung`);
    return { ok: false, stdout: e.stdout ?? "", stderr: e.stderr ?? "" };
  }
}

function hostedPath(file: string): string {
  return path.join(t.dataDir, "hosted", file);
}

async function hostedRef(file: string, ref: string): Promise<string | undefined> {
  const out = await gitCli(hostedPath(file), "rev-parse", "--verify", "--quiet", ref);
  return out.ok ? out.stdout.trim() : undefined;
}

async function pushEvents(): Promise<any[]> {
  return (await t.store.audit.list({ limit: 100 })).filter((e) => e.action === "push");
}

beforeAll(async () => {
  t = await startTurnout({ manifest: HOSTED_MANIFEST });
  port = Number(new URL(t.url).port);
  home = mkdtempSync(path.join(tmpdir(), "turnout-git-home-"));
  await t.writeManifest(
    "blog",
    `repo: "{repo}"\nenvironments:\n  live:\n    deploy:\n      provider: shell\n      command: ["true"]\n`,
  );
  await t.writeManifest("suite", SUITE_MANIFEST);
  expect([...t.engine.config().apps.keys()].sort()).toEqual(["blog", "shop", "suite"]);
  tokens["deployer"] = await makeToken("ci-deployer", "deployer");
  tokens["viewer"] = await makeToken("ci-viewer", "viewer");
  tokens["blog-only"] = await makeToken("blog-deployer", "deployer", ["blog"]);
  work = await makeRepo();
  await work.commit({ "README.md": "hello\n" }, "first");
});

beforeEach(() => {
  poke?.mockRestore();
  poke = vi.spyOn(t.engine, "poke").mockResolvedValue(undefined);
});

afterAll(async () => {
  poke?.mockRestore();
  await t?.stop();
  await work?.remove();
  if (home) rmSync(home, { recursive: true, force: true });
});

describe("pushing to a hosted app", () => {
  it("stores the commits, pokes the engine and records who pushed", async () => {
    const push = await gitCli(work.path, "push", remote("shop.git", tokens["deployer"]), "main");
    expect(push.stderr).not.toContain(tokens["deployer"]!);
    expect(push.ok, push.stderr).toBe(true);
    expect(await hostedRef("shop.git", "refs/heads/main")).toBe(work.head);
    // The new repository got the settings it is meant to have.
    expect((await gitCli(hostedPath("shop.git"), "config", "receive.fsckObjects")).stdout.trim()).toBe(
      "true",
    );
    await vi.waitFor(() => expect(poke).toHaveBeenCalledWith("shop", "push"));
    const events = await pushEvents();
    expect(events[0]).toMatchObject({
      actor: "ci-deployer",
      app: "shop",
      details: {
        component: "app",
        refs: [{ ref: "refs/heads/main", old: "0".repeat(40), new: work.head }],
        environments: ["staging"],
        poked: true,
      },
    });
    expect(JSON.stringify(events)).not.toContain(tokens["deployer"]!);
  });

  it("takes a fast-forward push, also with a bearer header", async () => {
    const before = work.head;
    await work.commit({ "README.md": "hello again\n" }, "second");
    const push = await gitCli(
      work.path,
      "-c",
      `http.extraHeader=Authorization: Bearer ${tokens["deployer"]}`,
      "push",
      remote("shop.git"),
      "main",
    );
    expect(push.ok, push.stderr).toBe(true);
    expect(await hostedRef("shop.git", "refs/heads/main")).toBe(work.head);
    await vi.waitFor(() => expect(poke).toHaveBeenCalledTimes(1));
    const [latest] = await pushEvents();
    expect(latest.details.refs).toEqual([{ ref: "refs/heads/main", old: before, new: work.head }]);
  });

  it("clones back with a viewer token", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "turnout-clone-"));
    try {
      const clone = await gitCli(dir, "clone", "--quiet", remote("shop.git", tokens["viewer"]), "copy");
      expect(clone.ok, clone.stderr).toBe(true);
      expect((await gitCli(path.join(dir, "copy"), "rev-parse", "HEAD")).stdout.trim()).toBe(work.head);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("does not poke for a branch no environment tracks", async () => {
    await work.checkout("feature");
    const sha = await work.commit({ "feature.txt": "wip\n" }, "feature");
    await work.checkout("main");
    const push = await gitCli(work.path, "push", remote("shop.git", tokens["deployer"]), "feature");
    expect(push.ok, push.stderr).toBe(true);
    expect(await hostedRef("shop.git", "refs/heads/feature")).toBe(sha);
    // The audit event is written before any poke would be: once it is there, the decision is made.
    await vi.waitFor(async () => {
      const [latest] = await pushEvents();
      expect(latest.details.refs[0].ref).toBe("refs/heads/feature");
    });
    const [latest] = await pushEvents();
    expect(latest.details).toMatchObject({ environments: [], poked: false });
    expect(poke).not.toHaveBeenCalled();
  });

  it("pokes for a push to another environment's branch", async () => {
    const push = await gitCli(work.path, "push", remote("shop.git", tokens["deployer"]), "main:release");
    expect(push.ok, push.stderr).toBe(true);
    await vi.waitFor(() => expect(poke).toHaveBeenCalledWith("shop", "push"));
    const [latest] = await pushEvents();
    expect(latest.details).toMatchObject({ environments: ["production"], poked: true });
  });

  it("hosts each hosted component of a multi-repo app under <app>/<component>.git", async () => {
    const push = await gitCli(work.path, "push", remote("suite/api.git", tokens["deployer"]), "main");
    expect(push.ok, push.stderr).toBe(true);
    expect(await hostedRef("suite/api.git", "refs/heads/main")).toBe(work.head);
    await vi.waitFor(() => expect(poke).toHaveBeenCalledWith("suite", "push"));
    const refused = await gitCli(work.path, "push", remote("suite.git", tokens["deployer"]), "main");
    expect(refused.ok).toBe(false);
    expect(refused.stderr).toContain(
      "remote error: turnout: app 'suite' hosts its repositories as suite/api.git",
    );
    // The URL of the old layout says where the repository went.
    const old = await gitCli(work.path, "push", remote("suite-api.git", tokens["deployer"]), "main");
    expect(old.ok).toBe(false);
    expect(old.stderr).toContain(
      "remote error: turnout: no app named 'suite-api' (a component's repository is now /git/suite/api.git)",
    );
    // A single-repo app has no component path, and a component no single-repo URL.
    const wrongShape = await gitCli(work.path, "push", remote("shop/app.git", tokens["deployer"]), "main");
    expect(wrongShape.ok).toBe(false);
    expect(wrongShape.stderr).toContain(
      "remote error: turnout: app 'shop' hosts its repositories as shop.git",
    );
  });
});

describe("apps whose repository names used to meet", () => {
  // App `col-web` (one hosted repository) and app `col` with the hosted
  // component `web` were both `hosted/col-web.git` before.
  const COL = `components:
  web:
    hosted: true
environments:
  staging:
    branches: { web: main }
    deploy:
      provider: shell
      command: ["true"]
`;

  beforeAll(async () => {
    await t.writeManifest("col-web", HOSTED_MANIFEST);
    await t.writeManifest("col", COL);
    tokens["col"] = await makeToken("col-deployer", "deployer", ["col"]);
    tokens["col-web"] = await makeToken("col-web-deployer", "deployer", ["col-web"]);
  });

  it("a token scoped to one cannot push to the other, and each push lands in its own repository only", async () => {
    await work.checkout("col");
    const colSha = await work.commit({ "owner.txt": "col\n" }, "col's commit");
    await work.checkout("main");
    await work.checkout("col-web");
    const colWebSha = await work.commit({ "owner.txt": "col-web\n" }, "col-web's commit");
    await work.checkout("main");

    const intoOwn = await gitCli(work.path, "push", remote("col/web.git", tokens["col"]), "col:main");
    expect(intoOwn.ok, intoOwn.stderr).toBe(true);
    await vi.waitFor(() => expect(poke).toHaveBeenCalledWith("col", "push"));
    const intoOther = await gitCli(work.path, "push", remote("col-web.git", tokens["col"]), "col:main");
    expect(intoOther.ok).toBe(false);
    expect(intoOther.stderr).toContain(
      // Another app's repository is refused like one that does not exist (the hint names only col's own).
      "remote error: turnout: no app named 'col-web'",
    );

    const intoOwn2 = await gitCli(
      work.path,
      "push",
      remote("col-web.git", tokens["col-web"]),
      "col-web:main",
    );
    expect(intoOwn2.ok, intoOwn2.stderr).toBe(true);
    await vi.waitFor(() => expect(poke).toHaveBeenCalledWith("col-web", "push"));
    const intoOther2 = await gitCli(
      work.path,
      "push",
      remote("col/web.git", tokens["col-web"]),
      "col-web:main",
    );
    expect(intoOther2.ok).toBe(false);
    expect(intoOther2.stderr).toContain("remote error: turnout: no app named 'col'");

    // Two repositories, each holding only its own app's push.
    expect(await hostedRef("col/web.git", "refs/heads/main")).toBe(colSha);
    expect(await hostedRef("col-web.git", "refs/heads/main")).toBe(colWebSha);
    expect(await hostedRef("col/web.git", `${colWebSha}^{commit}`)).toBeUndefined();
    expect(await hostedRef("col-web.git", `${colSha}^{commit}`)).toBeUndefined();
    expect(poke.mock.calls.map((c) => c[0]).sort()).toEqual(["col", "col-web"]);
    const events = await pushEvents();
    expect(events.filter((e) => e.app === "col").map((e) => e.actor)).toEqual(["col-deployer"]);
    expect(events.filter((e) => e.app === "col-web").map((e) => e.actor)).toEqual(["col-web-deployer"]);
  });
});

describe("streaming", () => {
  it("takes a push larger than git's post buffer (sent chunked)", async () => {
    await work.checkout("big");
    // Random bytes do not compress: git sends several MB with chunked transfer encoding.
    const sha = await work.commit({ "blob.bin": randomBytes(6 * 1024 * 1024).toString("base64") }, "big");
    await work.checkout("main");
    const push = await gitCli(work.path, "push", remote("shop.git", tokens["deployer"]), "big");
    expect(push.ok, push.stderr).toBe(true);
    expect(await hostedRef("shop.git", "refs/heads/big")).toBe(sha);
    await vi.waitFor(async () => {
      const [latest] = await pushEvents();
      expect(latest.details.refs).toEqual([{ ref: "refs/heads/big", old: "0".repeat(40), new: sha }]);
    });
  });

  /** Processes of this server's git backends, found by the environment they were given. */
  function backendPids(): number[] {
    const marker = `GIT_PROJECT_ROOT=${path.join(t.dataDir, "hosted")}\0`;
    const pids: number[] = [];
    for (const entry of readdirSync("/proc")) {
      if (!/^\d+$/.test(entry)) continue;
      try {
        if (readFileSync(`/proc/${entry}/environ`, "latin1").includes(marker)) pids.push(Number(entry));
      } catch {
        // gone, or not ours
      }
    }
    return pids;
  }

  it("kills git when the client hangs up mid-push", async () => {
    const req = http.request({
      host: "127.0.0.1",
      port,
      path: "/git/shop.git/git-receive-pack",
      method: "POST",
      headers: {
        authorization: `Basic ${Buffer.from(`x:${tokens["deployer"]}`).toString("base64")}`,
        "content-type": "application/x-git-receive-pack-request",
        "transfer-encoding": "chunked",
      },
    });
    req.on("error", () => {});
    const command = `${"0".repeat(40)} ${"1".repeat(40)} refs/heads/never\0 report-status\n`;
    req.write(`${(command.length + 4).toString(16).padStart(4, "0")}${command}0000PACK`);
    await vi.waitFor(() => expect(backendPids().length).toBeGreaterThan(0), { timeout: 5000 });
    req.destroy();
    await vi.waitFor(() => expect(backendPids()).toEqual([]), { timeout: 5000 });
    expect(await hostedRef("shop.git", "refs/heads/never")).toBeUndefined();
    expect(poke).not.toHaveBeenCalled();
  });

  it("refuses a body announced larger than 1 GiB before reading it", async () => {
    const status = await new Promise<number>((resolve, reject) => {
      const req = http.request(
        {
          host: "127.0.0.1",
          port,
          path: "/git/shop.git/git-receive-pack",
          method: "POST",
          headers: {
            authorization: `Basic ${Buffer.from(`x:${tokens["deployer"]}`).toString("base64")}`,
            "content-type": "application/x-git-receive-pack-request",
            "content-length": String(2 * 1024 * 1024 * 1024),
          },
        },
        (res) => {
          resolve(res.statusCode ?? 0);
          req.destroy();
        },
      );
      req.on("error", reject);
      req.flushHeaders();
    });
    expect(status).toBe(413);
  });
});

describe("refusals git shows", () => {
  async function expectRefused(url: string, message: string): Promise<void> {
    const head = await hostedRef("shop.git", "refs/heads/main");
    const push = await gitCli(work.path, "push", url, "main:refused");
    expect(push.ok).toBe(false);
    expect(push.stderr).toContain(`fatal: remote error: ${message}`);
    expect(await hostedRef("shop.git", "refs/heads/refused")).toBeUndefined();
    expect(await hostedRef("shop.git", "refs/heads/main")).toBe(head);
    expect(poke).not.toHaveBeenCalled();
  }

  it("a viewer token may not push", async () => {
    await expectRefused(
      remote("shop.git", tokens["viewer"]),
      "turnout: token 'ci-viewer' (viewer) may not push to shop: a deployer token is needed",
    );
  });

  it("a token limited to another app may neither push nor clone, and is told what a missing app gets", async () => {
    await expectRefused(remote("shop.git", tokens["blog-only"]), "turnout: no app named 'shop'");
    await expectRefused(remote("nope.git", tokens["blog-only"]), "turnout: no app named 'nope'");
    const dir = mkdtempSync(path.join(tmpdir(), "turnout-clone-"));
    try {
      const clone = await gitCli(dir, "clone", remote("shop.git", tokens["blog-only"]), "copy");
      expect(clone.ok).toBe(false);
      expect(clone.stderr).toContain("remote error: turnout: no app named 'shop'");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("an unknown app", async () => {
    await expectRefused(remote("nope.git", tokens["deployer"]), "turnout: no app named 'nope'");
    expect(existsSync(hostedPath("nope.git"))).toBe(false);
  });

  it("an app whose repository lives elsewhere", async () => {
    await expectRefused(
      remote("blog.git", tokens["deployer"]),
      "turnout: app 'blog' is not hosted by Turnout (its repository is elsewhere)",
    );
    expect(existsSync(hostedPath("blog.git"))).toBe(false);
  });

  it("no credentials: git fails without prompting", async () => {
    const push = await gitCli(work.path, "push", remote("shop.git"), "main:refused");
    expect(push.ok).toBe(false);
    expect(push.stderr).toMatch(/could not read Username|Authentication failed/);
    expect(await hostedRef("shop.git", "refs/heads/refused")).toBeUndefined();
  });

  it("a wrong token", async () => {
    const push = await gitCli(work.path, "push", remote("shop.git", "tnt_not-a-real-token"), "main:refused");
    expect(push.ok).toBe(false);
    expect(push.stderr).toContain("Authentication failed");
    expect(push.stderr).not.toContain("tnt_not-a-real-token");
    expect(await hostedRef("shop.git", "refs/heads/refused")).toBeUndefined();
  });

  it("answers 401 with a Basic challenge, before anything else", async () => {
    const res = await fetch(`${t.url}/git/nope.git/info/refs?service=git-receive-pack`);
    expect(res.status).toBe(401);
    expect(res.headers.get("www-authenticate")).toMatch(/^Basic realm="Turnout"/);
  });

  it("refuses a POST that skipped the advertisement", async () => {
    const res = await fetch(`${t.url}/git/shop.git/git-receive-pack`, {
      method: "POST",
      headers: {
        authorization: `Basic ${Buffer.from(`x:${tokens["viewer"]}`).toString("base64")}`,
        "content-type": "application/x-git-receive-pack-request",
      },
      body: "0000",
    });
    expect(res.status).toBe(403);
    expect(await res.text()).toContain("may not push to shop");
  });
});

describe("hostile requests", () => {
  function rawGet(urlPath: string): Promise<{ status: number; body: string }> {
    return new Promise((resolve, reject) => {
      const req = http.request(
        {
          host: "127.0.0.1",
          port,
          path: urlPath,
          method: "GET",
          headers: { authorization: `Basic ${Buffer.from(`x:${t.adminToken}`).toString("base64")}` },
        },
        (res) => {
          let body = "";
          res.setEncoding("utf8");
          res.on("data", (chunk: string) => {
            body += chunk;
          });
          res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
        },
      );
      req.on("error", reject);
      req.end();
    });
  }

  it("never hands a path outside the hosted repositories to git", async () => {
    const hostile = [
      "/git/../../etc.git/info/refs?service=git-upload-pack",
      "/git/shop.git/../../x",
      "/git/%2e%2e%2f%2e%2e%2fetc.git/info/refs?service=git-upload-pack",
      "/git/..%2Fshop.git/info/refs?service=git-upload-pack",
      "/git/shop.git%2F..%2F..%2Fetc/info/refs?service=git-upload-pack",
      "/git/-shop.git/info/refs?service=git-upload-pack",
      "/git/shop/info/refs?service=git-upload-pack",
      "/git/SHOP.git/info/refs?service=git-upload-pack",
    ];
    const answers: Array<{ path: string; status: number }> = [];
    const served = (calls: Array<{ argv: string[] }>) =>
      calls.filter((c) => c.argv.includes("http-backend") || c.argv.includes("init")).map((c) => c.argv);
    const hostileCalls = await withGitLog(async () => {
      for (const p of hostile) answers.push({ path: p, status: (await rawGet(p)).status });
      // A service that is not git's, or the dumb protocol: refused, not passed on.
      const odd = await rawGet("/git/shop.git/info/refs?service=--upload-pack=touch%20/tmp/x");
      expect(odd.status).toBe(403);
      expect((await rawGet("/git/shop.git/info/refs")).status).toBe(403);
    });
    for (const answer of answers) expect([400, 404], answer.path).toContain(answer.status);
    expect(served(hostileCalls)).toEqual([]);
    // The spy works: a good request does reach http-backend.
    const goodCalls = await withGitLog(async () => {
      expect((await rawGet("/git/shop.git/info/refs?service=git-upload-pack")).status).toBe(200);
    });
    expect(served(goodCalls)).toContainEqual(["http-backend"]);
    expect(readdirSync(path.join(t.dataDir, "hosted")).filter((f) => !f.startsWith("."))).not.toContain(
      "etc.git",
    );
    expect(
      readdirSync(path.join(t.dataDir, "hosted")).every((f) =>
        /^(shop\.git|suite|col|col-web\.git)$/.test(f),
      ),
    ).toBe(true);
  });
});
