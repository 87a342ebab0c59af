import { existsSync } from "node:fs";
import { mkdir, readdir, readFile, readlink, realpath, stat, writeFile } from "node:fs/promises";
import http from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { StageSpec } from "../../src/providers/fleet/host-ops.js";
import { SshHostOps } from "../../src/providers/fleet/ssh/ssh-host-ops.js";
import { type MemoryRelease, memoryRelease, type SshdInstance, startSshd } from "../helpers/sshd.js";
import { isAlive, until } from "../helpers/wait.js";

/**
 * SshHostOps against a real sshd on a loopback port: the "remote" release
 * root is a temp directory of this machine, so every test looks at the files
 * the host ended up with.
 */
let sshd: SshdInstance;
let host: SshHostOps;
const never = new AbortController().signal;

beforeAll(async () => {
  sshd = await startSshd();
  host = new SshHostOps(sshd.config("web-1"));
});
afterAll(async () => {
  await host?.close();
  await sshd?.stop();
});

function spec(app: string, release: MemoryRelease, extra: Partial<StageSpec> = {}): StageSpec {
  return {
    app,
    releaseId: release.id,
    manifest: release.manifest,
    shared: [],
    env: {},
    timeoutMs: 30_000,
    ...extra,
  };
}

const appDir = (app: string) => path.join(sshd.root, app);
const releaseDir = (app: string, id: string) => path.join(sshd.root, app, "releases", id);
const cached = (sha: string) => path.join(sshd.root, ".turnout/blobs", sha.slice(0, 2), sha);
const sha = (release: MemoryRelease, p: string) => {
  const entry = release.manifest.entries.find((e) => e.path === p);
  if (entry?.type !== "file") throw new Error(`no file ${p}`);
  return entry.sha256;
};
async function releaseOrder(app: string): Promise<string[]> {
  return (await readFile(path.join(appDir(app), ".releases"), "utf8")).split("\n").filter(Boolean);
}

describe("SshHostOps staging", () => {
  const v1 = memoryRelease({
    "hello.txt": "hello\n",
    "bin/run": { content: "#!/bin/sh\necho run\n", mode: 0o755 },
    "lib/a.js": "export const a = 1;\n",
    "lib/b.js": "export const b = 2;\n",
    "docs/empty": { dir: 0o755 },
    latest: { link: "bin/run" },
    "lib/up": { link: "../hello.txt" },
    "log/keep-me": "ignored: log is shared\n",
  });
  const v2 = memoryRelease({
    "hello.txt": "hello\n",
    "bin/run": { content: "#!/bin/sh\necho run\n", mode: 0o755 },
    "lib/a.js": "export const a = 1;\n",
    "lib/b.js": "export const b = 22222;\n",
    "docs/empty": { dir: 0o755 },
    latest: { link: "bin/run" },
    "lib/up": { link: "../hello.txt" },
  });

  it("materializes the tree: contents, modes, symlinks, hard links from the blob cache, shared links", async () => {
    const logs: string[] = [];
    const result = await host.stage(
      spec("shop", v1, { shared: ["log", "config/secrets"] }),
      v1.source,
      (l) => logs.push(l),
      never,
    );
    expect(result.staged).toBe(true);
    expect(result.blobsFetched).toBe(5);
    expect(result.bytesFetched).toBe([...v1.blobs.values()].reduce((n, b) => n + b.length, 0));

    const dir = releaseDir("shop", v1.id);
    expect(await readFile(path.join(dir, "hello.txt"), "utf8")).toBe("hello\n");
    expect(await readFile(path.join(dir, "lib/b.js"), "utf8")).toBe("export const b = 2;\n");
    expect((await stat(path.join(dir, "hello.txt"))).mode & 0o777).toBe(0o644);
    expect((await stat(path.join(dir, "bin/run"))).mode & 0o777).toBe(0o755);
    expect((await stat(path.join(dir, "docs/empty"))).isDirectory()).toBe(true);
    expect(await readlink(path.join(dir, "latest"))).toBe("bin/run");
    expect(await readlink(path.join(dir, "lib/up"))).toBe("../hello.txt");

    // Hard links: the release file is the cache's inode (executables: the cache's 755 sibling).
    const file = await stat(path.join(dir, "hello.txt"));
    const blob = await stat(cached(sha(v1, "hello.txt")));
    expect(file.ino).toBe(blob.ino);
    expect(file.nlink).toBeGreaterThanOrEqual(2);
    expect((await stat(path.join(dir, "bin/run"))).ino).toBe(
      (await stat(`${cached(sha(v1, "bin/run"))}.755`)).ino,
    );
    expect((await stat(cached(sha(v1, "bin/run")))).mode & 0o777).toBe(0o644);

    // Shared paths replace what the release had, pointing into <app>/shared.
    expect(await readlink(path.join(dir, "log"))).toBe("../../shared/log");
    expect(await readlink(path.join(dir, "config/secrets"))).toBe("../../../shared/config/secrets");
    expect((await stat(path.join(appDir("shop"), "shared/log"))).isDirectory()).toBe(true);
    await writeFile(path.join(dir, "log/app.log"), "line\n");
    expect(await readFile(path.join(appDir("shop"), "shared/log/app.log"), "utf8")).toBe("line\n");

    expect(await releaseOrder("shop")).toEqual([v1.id]);
    expect((await readdir(path.join(appDir("shop"), "releases"))).sort()).toEqual([v1.id]);
    expect(logs.join("\n")).toContain("sending 5 of 5 blobs");
  });

  it("sends only the blobs the host lacks: one changed file, one blob", async () => {
    const result = await host.stage(spec("shop", v2, { shared: ["log"] }), v2.source, () => {}, never);
    expect(result).toEqual({
      staged: true,
      blobsFetched: 1,
      bytesFetched: "export const b = 22222;\n".length,
    });
    expect(v2.source.opened).toEqual([sha(v2, "lib/b.js")]);
    expect(await readFile(path.join(releaseDir("shop", v2.id), "lib/b.js"), "utf8")).toBe(
      "export const b = 22222;\n",
    );
    // Shared state carries over to the new release.
    expect(await readFile(path.join(releaseDir("shop", v2.id), "log/app.log"), "utf8")).toBe("line\n");
    expect(await releaseOrder("shop")).toEqual([v1.id, v2.id]);
  });

  it("staging a release the host already holds does nothing", async () => {
    const again = memoryRelease({ "hello.txt": "hello\n" });
    await host.stage(spec("again", again), again.source, () => {}, never);
    const before = (await stat(releaseDir("again", again.id))).mtimeMs;
    const result = await host.stage(spec("again", again), again.source, () => {}, never);
    expect(result).toEqual({ staged: false, blobsFetched: 0, bytesFetched: 0 });
    expect((await stat(releaseDir("again", again.id))).mtimeMs).toBe(before);
    expect(await releaseOrder("again")).toEqual([again.id]);
  });

  it("switches current atomically and reports the previous release; a rollback is a switch back", async () => {
    expect(await host.switchTo("shop", v1.id, "current")).toEqual({ previous: null });
    expect(await readlink(path.join(appDir("shop"), "current"))).toBe(`releases/${v1.id}`);
    expect(await host.switchTo("shop", v2.id, "current")).toEqual({ previous: v1.id });
    expect(await readFile(path.join(appDir("shop"), "current/lib/b.js"), "utf8")).toBe(
      "export const b = 22222;\n",
    );
    expect(await host.switchTo("shop", v1.id, "current")).toEqual({ previous: v2.id });
    expect(await readlink(path.join(appDir("shop"), "current"))).toBe(`releases/${v1.id}`);
    // No temporary link is left behind.
    expect((await readdir(appDir("shop"))).filter((n) => n.startsWith(".tmp"))).toEqual([]);
  });

  it("slots point at releases; promoteSlot moves current where the slot points", async () => {
    expect(await host.switchTo("shop", v2.id, "blue")).toEqual({ previous: null });
    expect(await readlink(path.join(appDir("shop"), "slots/blue"))).toBe(`../releases/${v2.id}`);
    expect(await host.promoteSlot("shop", "blue")).toEqual({ previous: v1.id, current: v2.id });
    expect(await readlink(path.join(appDir("shop"), "current"))).toBe(`releases/${v2.id}`);
    await expect(host.promoteSlot("shop", "green")).rejects.toMatchObject({ code: "E_NOT_FOUND" });
    expect(await host.inventory()).toContainEqual({
      app: "shop",
      releases: [v1.id, v2.id].sort(),
      current: v2.id,
      slots: { blue: v2.id },
    });
  });

  it("runs before_switch in the staging directory with the env, before the release appears", async () => {
    const r = memoryRelease({ "app.txt": "app\n" });
    const logs: string[] = [];
    await host.stage(
      spec("hooks", r, {
        beforeSwitch: ["sh", "-c", 'pwd > where.txt; printf "%s" "$GREETING" > greeting.txt; echo hook ran'],
        env: { GREETING: "hello from the manifest" },
      }),
      r.source,
      (l) => logs.push(l),
      never,
    );
    const dir = releaseDir("hooks", r.id);
    expect((await readFile(path.join(dir, "where.txt"), "utf8")).trim()).toMatch(
      new RegExp(`/hooks/releases/\\.staging-${r.id}-[0-9a-f]{16}$`),
    );
    expect(await readFile(path.join(dir, "greeting.txt"), "utf8")).toBe("hello from the manifest");
    expect(logs).toContain("hook ran");
  });

  it("a failing before_switch leaves no release, no staging directory and no record", async () => {
    const ok = memoryRelease({ "v.txt": "1\n" });
    await host.stage(spec("failing", ok), ok.source, () => {}, never);
    const bad = memoryRelease({ "v.txt": "2\n" });
    const logs: string[] = [];
    await expect(
      host.stage(
        spec("failing", bad, { beforeSwitch: ["sh", "-c", "echo migration broke >&2; exit 3"] }),
        bad.source,
        (l) => logs.push(l),
        never,
      ),
    ).rejects.toMatchObject({
      code: "E_CONFLICT",
      message: expect.stringMatching(/before_switch failed \(exit status 3\)/),
    });
    expect(logs).toContain("migration broke");
    expect(await readdir(path.join(appDir("failing"), "releases"))).toEqual([ok.id]);
    expect(await releaseOrder("failing")).toEqual([ok.id]);
    await expect(host.switchTo("failing", bad.id, "current")).rejects.toMatchObject({ code: "E_NOT_FOUND" });
  });

  it("a before_switch past the time limit is stopped and fails staging", async () => {
    const r = memoryRelease({ "slow.txt": "slow\n" });
    const started = Date.now();
    await expect(
      host.stage(
        spec("slow", r, { beforeSwitch: ["sleep", "30"], timeoutMs: 1500 }),
        r.source,
        () => {},
        never,
      ),
    ).rejects.toMatchObject({ message: expect.stringMatching(/timed out/) });
    expect(Date.now() - started).toBeLessThan(15_000);
    expect(await readdir(path.join(appDir("slow"), "releases"))).toEqual([]);
  });
});

describe("SshHostOps layout invariant", () => {
  it("never lets current or a slot point at a release that is not completely staged", async () => {
    const base = memoryRelease({ "v.txt": "base\n" });
    await host.stage(spec("inv", base), base.source, () => {}, never);
    await host.switchTo("inv", base.id, "current");

    const tree: Record<string, string> = {};
    for (let i = 0; i < 40; i++) tree[`files/f${i}.txt`] = `file ${i}\n`;
    const next = memoryRelease(tree);
    const staging = host.stage(
      spec("inv", next, { beforeSwitch: ["sleep", "1"] }),
      next.source,
      () => {},
      never,
    );
    let done = false;
    staging.finally(() => {
      done = true;
    });
    const seen = new Set<string>();
    let switched = false;
    let refusals = 0;
    while (!done) {
      const names = await readdir(path.join(appDir("inv"), "releases"));
      for (const name of names) seen.add(name.startsWith(".staging-") ? ".staging" : name);
      if (names.includes(next.id) && !done) {
        // Visible under its name only when complete.
        expect(await readdir(path.join(releaseDir("inv", next.id), "files"))).toHaveLength(40);
      }
      // current always resolves to a whole release.
      expect(existsSync(path.join(appDir("inv"), "current/v.txt"))).toBe(true);
      // A slot can be pointed at the release only once it is complete.
      if (!switched) {
        try {
          await host.switchTo("inv", next.id, "canary");
          switched = true;
          expect(await readdir(path.join(appDir("inv"), "slots/canary/files"))).toHaveLength(40);
        } catch (error) {
          expect(error).toMatchObject({ code: "E_NOT_FOUND" });
          refusals++;
        }
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    await staging;
    expect(seen.has(".staging")).toBe(true);
    expect(refusals).toBeGreaterThan(0);
    expect(await readlink(path.join(appDir("inv"), "current"))).toBe(`releases/${base.id}`);
    expect(await host.switchTo("inv", next.id, "current")).toEqual({ previous: base.id });
  });
});

describe("SshHostOps prune", () => {
  it("keeps the newest 5 and every release current or a slot points at", async () => {
    const releases: MemoryRelease[] = [];
    for (let i = 0; i < 8; i++) {
      const r = memoryRelease({ "v.txt": `version ${i}\n`, "same.txt": "same\n" });
      releases.push(r);
      await host.stage(spec("prune", r), r.source, () => {}, never);
    }
    const ids = releases.map((r) => r.id);
    await host.switchTo("prune", ids[1]!, "current");
    await host.switchTo("prune", ids[0]!, "old");
    expect(await host.prune("prune", 5)).toEqual({ removed: [ids[2]] });
    expect((await readdir(path.join(appDir("prune"), "releases"))).sort()).toEqual(
      [ids[0], ids[1], ...ids.slice(3)].sort(),
    );
    expect(await releaseOrder("prune")).toEqual([ids[0], ids[1], ...ids.slice(3)]);
    expect(await host.prune("prune", 5)).toEqual({ removed: [] });

    // Once the pointers move on, the old ones go too, oldest first.
    await host.switchTo("prune", ids[7]!, "current");
    await host.switchTo("prune", ids[6]!, "old");
    expect(await host.prune("prune", 2)).toEqual({ removed: [ids[0], ids[1], ids[3], ids[4], ids[5]] });
    expect((await readdir(path.join(appDir("prune"), "releases"))).sort()).toEqual([ids[6], ids[7]].sort());
    expect(await readFile(path.join(appDir("prune"), "current/v.txt"), "utf8")).toBe("version 7\n");
    // The cache still serves the next release.
    const again = await host.stage(spec("prune", releases[2]!), releases[2]!.source, () => {}, never);
    expect(again).toMatchObject({ staged: true, blobsFetched: 0 });
  });
});

describe("SshHostOps run and health", () => {
  const r = memoryRelease({ "hello.txt": "hi\n" });
  beforeAll(async () => {
    await host.stage(spec("svc", r), r.source, () => {}, never);
    await host.switchTo("svc", r.id, "current");
  });

  it("runs argv in current with the env and returns its exit status", async () => {
    const logs: string[] = [];
    const status = await host.run(
      "svc",
      ["sh", "-c", 'echo "$GREETING from $(pwd -P)"; echo to stderr >&2; exit 7'],
      { GREETING: "hello" },
      10_000,
      (l) => logs.push(l),
      never,
    );
    expect(status).toBe(7);
    expect(logs).toContain(`hello from ${await realpath(releaseDir("svc", r.id))}`);
    expect(logs).toContain("to stderr");
    expect(await host.run("svc", ["true"], {}, 10_000, () => {}, never)).toBe(0);
    expect(await host.run("svc", ["no-such-program-here"], {}, 10_000, () => {}, never)).toBe(127);
  });

  it("stops a command at its time limit", async () => {
    const logs: string[] = [];
    const started = Date.now();
    expect(await host.run("svc", ["sleep", "30"], {}, 1000, (l) => logs.push(l), never)).toBe(124);
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(logs.join("\n")).toMatch(/timed out after 1 s/);
  });

  it("an abort stops the command on the host too", async () => {
    const pidFile = path.join(sshd.dir, "run.pid");
    const abort = new AbortController();
    const running = host.run(
      "svc",
      ["sh", "-c", 'echo $$ > "$PID_FILE"; exec sleep 60'],
      { PID_FILE: pidFile },
      60_000,
      () => {},
      abort.signal,
    );
    running.catch(() => undefined);
    await until(() => existsSync(pidFile), 10_000, "the command started");
    const pid = Number((await readFile(pidFile, "utf8")).trim());
    expect(isAlive(pid)).toBe(true);
    abort.abort();
    await expect(running).rejects.toMatchObject({ code: "E_UNAVAILABLE" });
    await until(() => !isAlive(pid), 10_000, "the remote command stopped");
  });

  it("refuses to run where there is no current release", async () => {
    await expect(host.run("nothing-here", ["true"], {}, 5000, () => {}, never)).rejects.toMatchObject({
      code: "E_NOT_FOUND",
    });
  });

  it("checks health over http from the host, with retries", async () => {
    let hits = 0;
    const server = http.createServer((req, res) => {
      hits++;
      res.statusCode = req.url === "/healthz" ? 200 : 503;
      res.end("x");
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const port = (server.address() as AddressInfo).port;
    try {
      const check = { retries: 2, intervalMs: 50, timeoutMs: 5000 };
      expect(
        await host.health("svc", { ...check, http: `http://127.0.0.1:${port}/healthz` }, () => {}, never),
      ).toBe(true);
      expect(hits).toBe(1);
      const logs: string[] = [];
      expect(
        await host.health(
          "svc",
          { ...check, http: `http://127.0.0.1:${port}/broken` },
          (l) => logs.push(l),
          never,
        ),
      ).toBe(false);
      expect(hits).toBe(4);
      expect(logs.filter((l) => /health check \d\/3 failed/.test(l))).toHaveLength(3);
    } finally {
      server.close();
    }
  });

  it("checks health with a command in the current release", async () => {
    const check = { retries: 1, intervalMs: 10, timeoutMs: 5000 };
    expect(
      await host.health("svc", { ...check, command: ["test", "-f", "hello.txt"] }, () => {}, never),
    ).toBe(true);
    const logs: string[] = [];
    expect(
      await host.health(
        "svc",
        { ...check, command: ["test", "-f", "missing.txt"] },
        (l) => logs.push(l),
        never,
      ),
    ).toBe(false);
    expect(logs.filter((l) => /health check \d\/2 failed/.test(l))).toHaveLength(2);
  });
});

describe("SshHostOps connection", () => {
  it("shares one connection and ends it on close; the next operation connects again", async () => {
    const base = path.join(sshd.dir, "control");
    await mkdir(base);
    const own = new SshHostOps(sshd.config("web-2"), { controlBase: base });
    await Promise.all([own.inventory(), own.inventory(), own.inventory()]);
    const dirs = await readdir(base);
    expect(dirs).toHaveLength(1);
    expect(((await stat(path.join(base, dirs[0]!))).mode & 0o777).toString(8)).toBe("700");
    expect((await stat(path.join(base, dirs[0]!, "m"))).isSocket()).toBe(true);
    await own.close();
    expect(await readdir(base)).toEqual([]);
    expect(Array.isArray(await own.inventory())).toBe(true);
    expect(await readdir(base)).toHaveLength(1);
    await own.close();
    expect(await readdir(base)).toEqual([]);
  });

  it("reports an unreachable host clearly", async () => {
    const down = new SshHostOps({ ...sshd.config("down"), port: 1 });
    await expect(down.inventory()).rejects.toMatchObject({
      code: "E_UNAVAILABLE",
      message: expect.stringMatching(/ssh to down failed/),
    });
    await down.close();
  });
});
