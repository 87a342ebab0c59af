import { existsSync } from "node:fs";
import { mkdir, readdir, readFile, readlink, realpath, rm, stat, utimes, writeFile } from "node:fs/promises";
import http from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { assertHostConsistent } from "../../src/agent/host-layout/consistency.js";
import { MASK, SecretMasker } from "../../src/domain/secrets.js";
import { LogChannel } from "../../src/engine/log-channel.js";
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
const cached = (digest: string) => path.join(sshd.root, ".turnout/blobs", digest.slice(0, 2), digest);
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
    "log/keep-me": "left out: log is shared\n",
    "config/app.yml": { content: "default: config\n", mode: 0o640 },
  });
  const v2 = memoryRelease({
    "hello.txt": "hello\n",
    "bin/run": { content: "#!/bin/sh\necho run\n", mode: 0o755 },
    "lib/a.js": "export const a = 1;\n",
    "lib/b.js": "export const b = 22222;\n",
    "docs/empty": { dir: 0o755 },
    latest: { link: "bin/run" },
    "lib/up": { link: "../hello.txt" },
    "config/app.yml": { content: "default: config\n", mode: 0o640 },
  });
  const shared = ["log", "config/app.yml", "tmp/cache"];

  it("materializes the tree: contents, modes, symlinks, hard links from the blob cache, shared links", async () => {
    const logs: string[] = [];
    const result = await host.stage(spec("shop", v1, { shared }), v1.source, (l) => logs.push(l), never);
    // log/keep-me lies under a shared path: left out, and its blob is not sent.
    const sent = [...v1.blobs].filter(([digest]) => digest !== sha(v1, "log/keep-me"));
    expect(sent).toHaveLength(5);
    expect(result).toEqual({
      staged: true,
      blobsFetched: 5,
      bytesFetched: sent.reduce((n, [, blob]) => n + blob.length, 0),
    });

    const dir = releaseDir("shop", v1.id);
    expect(await readFile(path.join(dir, "hello.txt"), "utf8")).toBe("hello\n");
    expect(await readFile(path.join(dir, "lib/b.js"), "utf8")).toBe("export const b = 2;\n");
    // Release files are never writable: they share their inode with the cache and other releases.
    expect((await stat(path.join(dir, "hello.txt"))).mode & 0o777).toBe(0o444);
    expect((await stat(path.join(dir, "bin/run"))).mode & 0o777).toBe(0o555);
    expect((await stat(dir)).mode & 0o777).toBe(0o755);
    expect((await stat(path.join(dir, "docs/empty"))).isDirectory()).toBe(true);
    expect(await readlink(path.join(dir, "latest"))).toBe("bin/run");
    expect(await readlink(path.join(dir, "lib/up"))).toBe("../hello.txt");

    // Hard links: the release file is the cache's inode (executables: its 555 sibling).
    const file = await stat(path.join(dir, "hello.txt"));
    expect(file.ino).toBe((await stat(cached(sha(v1, "hello.txt")))).ino);
    expect(file.nlink).toBeGreaterThanOrEqual(2);
    expect((await stat(path.join(dir, "bin/run"))).ino).toBe(
      (await stat(`${cached(sha(v1, "bin/run"))}.555`)).ino,
    );
    expect((await stat(cached(sha(v1, "bin/run")))).mode & 0o777).toBe(0o444);

    // Shared paths: links into <app>/shared; a missing one is seeded from the release's file, else a directory.
    expect(await readlink(path.join(dir, "log"))).toBe("../../shared/log");
    expect(await readlink(path.join(dir, "config/app.yml"))).toBe("../../../shared/config/app.yml");
    expect(await readlink(path.join(dir, "tmp/cache"))).toBe("../../../shared/tmp/cache");
    expect(await readdir(path.join(appDir("shop"), "shared/log"))).toEqual([]);
    const seeded = path.join(appDir("shop"), "shared/config/app.yml");
    expect(await readFile(seeded, "utf8")).toBe("default: config\n");
    expect((await stat(seeded)).mode & 0o777).toBe(0o640);
    await writeFile(path.join(dir, "log/app.log"), "line\n");
    expect(await readFile(path.join(appDir("shop"), "shared/log/app.log"), "utf8")).toBe("line\n");

    expect(await releaseOrder("shop")).toEqual([v1.id]);
    expect(await readdir(path.join(appDir("shop"), "releases"))).toEqual([v1.id]);
    expect(logs).toContain(`staging ${v1.id}: 4 files, fetching 5 of 5 blobs (${result.bytesFetched} bytes)`);
    expect(logs).toContain("shared: created directory log");
    expect(logs).toContain("shared: created config/app.yml from the copy in the release");
    expect(logs).toContain(`staged ${v1.id}`);
    await assertHostConsistent(sshd.root);
  });

  it("sends only the blobs the host lacks: one changed file, one blob", async () => {
    const seeded = path.join(appDir("shop"), "shared/config/app.yml");
    await writeFile(seeded, "edited by the app\n");
    const result = await host.stage(spec("shop", v2, { shared }), v2.source, () => {}, never);
    expect(result).toEqual({
      staged: true,
      blobsFetched: 1,
      bytesFetched: "export const b = 22222;\n".length,
    });
    expect(v2.source.opened).toEqual([sha(v2, "lib/b.js")]);
    expect(await readFile(path.join(releaseDir("shop", v2.id), "lib/b.js"), "utf8")).toBe(
      "export const b = 22222;\n",
    );
    // Shared state carries over to the new release; an existing shared file is never replaced.
    expect(await readFile(path.join(releaseDir("shop", v2.id), "log/app.log"), "utf8")).toBe("line\n");
    expect(await readFile(path.join(releaseDir("shop", v2.id), "config/app.yml"), "utf8")).toBe(
      "edited by the app\n",
    );
    expect(await releaseOrder("shop")).toEqual([v1.id, v2.id]);
  });

  it("staging a release the host already holds does nothing", async () => {
    const again = memoryRelease({ "hello.txt": "hello\n" });
    await host.stage(spec("again", again), again.source, () => {}, never);
    const before = (await stat(releaseDir("again", again.id))).mtimeMs;
    const logs: string[] = [];
    const result = await host.stage(spec("again", again), again.source, (l) => logs.push(l), never);
    expect(result).toEqual({ staged: false, blobsFetched: 0, bytesFetched: 0 });
    expect(logs).toEqual([`release ${again.id} is already staged`]);
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
    expect((await readdir(appDir("shop"))).filter((n) => n.includes(".tmp-"))).toEqual([]);
    await assertHostConsistent(sshd.root);
  });

  it("slots point at releases; promoteSlot moves current where the slot points", async () => {
    expect(await host.switchTo("shop", v2.id, "blue")).toEqual({ previous: null });
    expect(await readlink(path.join(appDir("shop"), "slots/blue"))).toBe(`../releases/${v2.id}`);
    expect(await host.promoteSlot("shop", "blue")).toEqual({ previous: v1.id, current: v2.id });
    expect(await readlink(path.join(appDir("shop"), "current"))).toBe(`releases/${v2.id}`);
    await expect(host.promoteSlot("shop", "green")).rejects.toMatchObject({ code: "E_NOT_FOUND" });
    await expect(host.promoteSlot("shop", "current")).rejects.toMatchObject({ code: "E_VALIDATION" });
    expect(await host.inventory()).toContainEqual({
      app: "shop",
      releases: [v1.id, v2.id],
      current: v2.id,
      slots: { blue: v2.id },
    });
    await assertHostConsistent(sshd.root);
  });

  it("refuses to point current at a directory that is in the way", async () => {
    const r = memoryRelease({ "x.txt": "x\n" });
    await host.stage(spec("blocked", r), r.source, () => {}, never);
    await mkdir(path.join(appDir("blocked"), "current"));
    await expect(host.switchTo("blocked", r.id, "current")).rejects.toMatchObject({ code: "E_CONFLICT" });
    expect((await stat(path.join(appDir("blocked"), "current"))).isDirectory()).toBe(true);
    await rm(path.join(appDir("blocked"), "current"), { recursive: true });
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
    expect(logs).toContain(
      `before_switch: ${JSON.stringify(["sh", "-c", 'pwd > where.txt; printf "%s" "$GREETING" > greeting.txt; echo hook ran'])}`,
    );
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
      code: "E_VALIDATION",
      message: "before_switch failed with exit code 3",
      details: { exitCode: 3 },
    });
    expect(logs).toContain("migration broke");
    expect(await readdir(path.join(appDir("failing"), "releases"))).toEqual([ok.id]);
    expect(await releaseOrder("failing")).toEqual([ok.id]);
    await expect(host.switchTo("failing", bad.id, "current")).rejects.toMatchObject({ code: "E_NOT_FOUND" });
  });

  it("a before_switch past the time limit is stopped and fails staging", async () => {
    const r = memoryRelease({ "slow.txt": "slow\n" });
    const logs: string[] = [];
    const started = Date.now();
    await expect(
      host.stage(
        spec("slow", r, { beforeSwitch: ["sleep", "30"], timeoutMs: 1500 }),
        r.source,
        (l) => logs.push(l),
        never,
      ),
    ).rejects.toMatchObject({ code: "E_VALIDATION", details: { exitCode: 124 } });
    expect(Date.now() - started).toBeLessThan(15_000);
    expect(logs).toContain("before_switch: timed out after 2 s, stopped");
    expect(await readdir(path.join(appDir("slow"), "releases"))).toEqual([]);
  });

  it("an abort while staging stops before_switch on the host and leaves nothing", async () => {
    const r = memoryRelease({ "slow.txt": "aborted\n" });
    const pidFile = path.join(sshd.dir, "hook.pid");
    const abort = new AbortController();
    const staging = host.stage(
      spec("aborted", r, {
        beforeSwitch: ["sh", "-c", 'echo $$ > "$PID_FILE"; exec sleep 60'],
        env: { PID_FILE: pidFile },
      }),
      r.source,
      () => {},
      abort.signal,
    );
    staging.catch(() => undefined);
    await until(() => existsSync(pidFile), 10_000, "the hook started");
    const pid = Number((await readFile(pidFile, "utf8")).trim());
    abort.abort();
    await expect(staging).rejects.toMatchObject({ name: "AbortError" });
    await until(() => !isAlive(pid), 10_000, "the hook stopped");
    await until(
      async () => (await readdir(path.join(appDir("aborted"), "releases"))).length === 0,
      10_000,
      "cleanup",
    );
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
      if (names.includes(next.id)) {
        // Visible under its name only when complete.
        expect(await readdir(path.join(releaseDir("inv", next.id), "files"))).toHaveLength(40);
      }
      await assertHostConsistent(sshd.root);
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
    await assertHostConsistent(sshd.root);
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
    await assertHostConsistent(sshd.root);

    // Once the pointers move on, the old ones go too, oldest first.
    await host.switchTo("prune", ids[7]!, "current");
    await host.switchTo("prune", ids[6]!, "old");
    expect(await host.prune("prune", 2)).toEqual({ removed: [ids[0], ids[1], ids[3], ids[4], ids[5]] });
    expect((await readdir(path.join(appDir("prune"), "releases"))).sort()).toEqual([ids[6], ids[7]].sort());
    expect(await readFile(path.join(appDir("prune"), "current/v.txt"), "utf8")).toBe("version 7\n");
    // The cache still serves a release staged again: nothing to send.
    const again = await host.stage(spec("prune", releases[2]!), releases[2]!.source, () => {}, never);
    expect(again).toMatchObject({ staged: true, blobsFetched: 0 });
    expect(await releaseOrder("prune")).toEqual([ids[6], ids[7], ids[2]]);
  });

  it("drops cache blobs no release links any more, once they are old enough", async () => {
    const a = memoryRelease({ "only-in-a.txt": "only in a\n" });
    const b = memoryRelease({ "only-in-b.txt": "only in b\n" });
    await host.stage(spec("gc", a), a.source, () => {}, never);
    await host.stage(spec("gc", b), b.source, () => {}, never);
    await host.switchTo("gc", b.id, "current");
    const blobA = cached(sha(a, "only-in-a.txt"));
    const blobB = cached(sha(b, "only-in-b.txt"));
    const hoursAgo = new Date(Date.now() - 2 * 3600_000);
    await utimes(blobA, hoursAgo, hoursAgo);
    await utimes(blobB, hoursAgo, hoursAgo);
    // A blob received a moment ago and not linked yet (its staging is on its way) stays.
    const fresh = memoryRelease({ "fresh.txt": "just received\n" });
    const freshBlob = cached(sha(fresh, "fresh.txt"));
    await mkdir(path.dirname(freshBlob), { recursive: true });
    await writeFile(freshBlob, "just received\n", { mode: 0o444 });
    expect(await host.prune("gc", 1)).toEqual({ removed: [a.id] });
    expect(existsSync(blobA)).toBe(false);
    expect(existsSync(blobB)).toBe(true);
    expect(existsSync(freshBlob)).toBe(true);
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

  it("hands on a line longer than 16 KiB in pieces, which a log channel joins and masks whole", async () => {
    const secret = "sk-very-secret-value";
    const pieces: { line: string; continued: boolean }[] = [];
    const masked: string[] = [];
    const channel = new LogChannel("[web-1] ", new SecretMasker([secret]), (line) => masked.push(line));
    const status = await host.run(
      "svc",
      // The secret straddles the 16 KiB point where the host's line is cut into pieces.
      [
        "sh",
        "-c",
        // biome-ignore lint/suspicious/noTemplateCurlyInString: shell parameter expansions, for the shell on the host
        'printf "%16380s" "" | tr " " x; printf "%s" "${KEY%-secret-value}"; sleep 0.5; printf "%s and more\\n" "${KEY#sk-very}"',
      ],
      { KEY: secret },
      10_000,
      (line, continued = false) => {
        pieces.push({ line, continued });
        channel.line(line, continued);
      },
      never,
    );
    channel.end();
    expect(status).toBe(0);
    expect(pieces.length).toBeGreaterThan(1);
    for (const piece of pieces) expect(piece.line.length).toBeLessThanOrEqual(16 * 1024);
    expect(pieces.map((p) => p.continued)).toEqual([...pieces.slice(1).map(() => true), false]);
    expect(pieces.map((p) => p.line).join("")).toBe(`${"x".repeat(16_380)}${secret} and more`);
    const shown = masked.map((line) => line.slice("[web-1] ".length)).join("");
    expect(shown).toBe(`${"x".repeat(16_380)}${MASK} and more`);
  });

  it("stops a command at its time limit", async () => {
    const logs: string[] = [];
    const started = Date.now();
    expect(await host.run("svc", ["sleep", "30"], {}, 1000, (l) => logs.push(l), never)).toBe(124);
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(logs).toContain("sleep: timed out after 1000 ms, stopped");
  });

  it("an abort stops the command on the host too", async () => {
    const pidFile = path.join(sshd.dir, "run.pid");
    const logs: string[] = [];
    const abort = new AbortController();
    const running = host.run(
      "svc",
      ["sh", "-c", 'echo $$ > "$PID_FILE"; exec sleep 60'],
      { PID_FILE: pidFile },
      60_000,
      (l) => logs.push(l),
      abort.signal,
    );
    await until(() => existsSync(pidFile), 10_000, "the command started");
    const pid = Number((await readFile(pidFile, "utf8")).trim());
    expect(isAlive(pid)).toBe(true);
    abort.abort();
    expect(await running).toBe(130);
    await until(() => !isAlive(pid), 10_000, "the remote command stopped");
    expect(logs).toContain("sh: aborted");
  });

  it("without a current release, runs in the app directory (depool may come first)", async () => {
    const logs: string[] = [];
    expect(await host.run("nothing-here", ["pwd"], {}, 5000, (l) => logs.push(l), never)).toBe(0);
    expect(logs).toEqual([
      `nothing-here has no current release yet: running in ${appDir("nothing-here")}`,
      appDir("nothing-here"),
    ]);
  });

  it("gives commands the TURNOUT_* variables an agent gives them", async () => {
    const print =
      'printf "%s|%s|%s|%s|%s\\n" "$TURNOUT_APP" "$TURNOUT_RELEASE_ID" "$TURNOUT_RELEASE_DIR" "$TURNOUT_SHARED_DIR"';
    const logs: string[] = [];
    expect(
      await host.run(
        "svc",
        ["sh", "-c", `${print} "$MINE"`],
        { MINE: "mine", TURNOUT_APP: "x" },
        5000,
        (l) => logs.push(l),
        never,
      ),
    ).toBe(0);
    expect(logs).toEqual([`svc|${r.id}|${releaseDir("svc", r.id)}|${appDir("svc")}/shared|mine`]);

    const next = memoryRelease({ "hello.txt": "hi again\n" });
    await host.stage(
      spec("svc", next, { beforeSwitch: ["sh", "-c", `${print} "$TURNOUT_RELEASE_FINAL_DIR" > vars.txt`] }),
      next.source,
      () => {},
      never,
    );
    const vars = (await readFile(path.join(releaseDir("svc", next.id), "vars.txt"), "utf8"))
      .trim()
      .split("|");
    expect(vars[0]).toBe("svc");
    expect(vars[1]).toBe(next.id);
    expect(vars[2]).toMatch(new RegExp(`/svc/releases/\\.staging-${next.id}-[0-9a-f]{16}$`));
    expect(vars[3]).toBe(`${appDir("svc")}/shared`);
    expect(vars[4]).toBe(releaseDir("svc", next.id));
  });

  it("checks health over http from the host, with retries", async () => {
    let hits = 0;
    const server = http.createServer((req, res) => {
      hits++;
      if (req.url === "/moved") res.setHeader("location", "/healthz");
      res.statusCode = req.url === "/healthz" ? 200 : req.url === "/moved" ? 302 : 503;
      res.end("x");
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const port = (server.address() as AddressInfo).port;
    try {
      const check = { retries: 2, intervalMs: 50, timeoutMs: 5000 };
      const url = `http://127.0.0.1:${port}`;
      expect(await host.health("svc", { ...check, http: `${url}/healthz` }, () => {}, never)).toBe(true);
      expect(hits).toBe(1);
      const logs: string[] = [];
      expect(await host.health("svc", { ...check, http: `${url}/broken` }, (l) => logs.push(l), never)).toBe(
        false,
      );
      expect(hits).toBe(4);
      expect(logs).toEqual([1, 2, 3].map((n) => `health: try ${n}/3 failed: HTTP 503`));
      // A redirect is not health (a login page, say).
      expect(await host.health("svc", { ...check, retries: 0, http: `${url}/moved` }, () => {}, never)).toBe(
        false,
      );
      expect(hits).toBe(5);
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
    expect(logs).toEqual([1, 2].map((n) => `health: try ${n}/2 failed: exit code 1`));
    const none: string[] = [];
    expect(
      await host.health("nothing-here", { ...check, command: ["true"] }, (l) => none.push(l), never),
    ).toBe(false);
    expect(none).toEqual([1, 2].map((n) => `health: try ${n}/2 failed: the app has no current release`));
    await expect(
      host.health("svc", { ...check, command: ["true"], http: "http://127.0.0.1:1/" }, () => {}, never),
    ).rejects.toMatchObject({ code: "E_VALIDATION" });
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
    expect((await stat(path.join(base, dirs[0]!))).mode & 0o777).toBe(0o700);
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
