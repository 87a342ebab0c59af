import { createHash } from "node:crypto";
import {
  lstat,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  readlink,
  rm,
  stat,
  symlink,
  utimes,
  writeFile,
} from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { Worker } from "node:worker_threads";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { assertHostConsistent, LocalHostOps } from "../../src/agent/host-layout/index.js";
import {
  type ArtifactEntry,
  type ArtifactManifest,
  hostReleaseId,
  manifestDigest,
} from "../../src/domain/artifact.js";
import type { BlobSource, StageSpec } from "../../src/providers/fleet/host-ops.js";

type Tree = Record<string, string | { content: string; mode?: number } | { link: string } | { dir: number }>;

const sha = (data: Buffer | string) => createHash("sha256").update(data).digest("hex");

/** A manifest (with every parent directory) and its blobs, from a small description. */
function artifact(tree: Tree): { manifest: ArtifactManifest; blobs: Map<string, Buffer>; id: string } {
  const entries = new Map<string, ArtifactEntry>();
  const blobs = new Map<string, Buffer>();
  const parents = (path: string) => {
    const parts = path.split("/");
    for (let i = 1; i < parts.length; i++) {
      const dir = parts.slice(0, i).join("/");
      if (!entries.has(dir)) entries.set(dir, { path: dir, type: "dir", mode: 0o755 });
    }
  };
  for (const [path, spec] of Object.entries(tree)) {
    parents(path);
    if (typeof spec === "string" || "content" in spec) {
      const content = Buffer.from(typeof spec === "string" ? spec : spec.content);
      const digest = sha(content);
      blobs.set(digest, content);
      const mode = typeof spec === "string" ? 0o644 : (spec.mode ?? 0o644);
      entries.set(path, { path, type: "file", mode, size: content.length, sha256: digest });
    } else if ("link" in spec) {
      entries.set(path, { path, type: "symlink", target: spec.link });
    } else {
      entries.set(path, { path, type: "dir", mode: spec.dir });
    }
  }
  const manifest: ArtifactManifest = {
    version: 1,
    entries: [...entries.values()].sort((a, b) => (a.path < b.path ? -1 : 1)),
  };
  return { manifest, blobs, id: hostReleaseId(manifestDigest(manifest)) };
}

/** Serves blobs from memory and counts what was asked for. */
class MemorySource implements BlobSource {
  readonly opened: string[] = [];
  readonly blobs = new Map<string, Buffer>();
  add(blobs: Map<string, Buffer>): this {
    for (const [k, v] of blobs) this.blobs.set(k, v);
    return this;
  }
  async open(digest: string): Promise<Readable> {
    this.opened.push(digest);
    const blob = this.blobs.get(digest);
    if (!blob) throw new Error(`no blob ${digest}`);
    return Readable.from([blob]);
  }
}

const noLog = () => {};
const live = () => new AbortController().signal;

let root: string;
let host: LocalHostOps;

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), "turnout-host-"));
  host = new LocalHostOps({ name: "h1", root, fsyncs: false, killGraceMs: 500 });
});

afterEach(async () => {
  await assertHostConsistent(root);
  await rm(root, { recursive: true, force: true });
});

function spec(app: string, a: ReturnType<typeof artifact>, extra: Partial<StageSpec> = {}): StageSpec {
  return { app, releaseId: a.id, manifest: a.manifest, shared: [], env: {}, timeoutMs: 10_000, ...extra };
}

async function stage(a: ReturnType<typeof artifact>, extra: Partial<StageSpec> = {}, source?: MemorySource) {
  return host.stage(spec("web", a, extra), source ?? new MemorySource().add(a.blobs), noLog, live());
}

const appDir = () => join(root, "web");
const rel = (id: string) => join(root, "web", "releases", id);
const cacheEntries = async () => {
  const dir = join(root, ".turnout", "blobs");
  const out: string[] = [];
  for (const shard of await readdir(dir).catch(() => [] as string[])) {
    if (shard === "tmp") continue;
    for (const name of await readdir(join(dir, shard))) out.push(name);
  }
  return out;
};
const releaseDirs = async () => readdir(join(appDir(), "releases")).catch(() => [] as string[]);

describe("staging and switching", () => {
  it("stages a release and switches current to it, with contents, modes and links right", async () => {
    const a = artifact({
      "bin/server": { content: "#!/bin/sh\necho hi\n", mode: 0o755 },
      "bin/same-as-readme": { content: "hello\n", mode: 0o755 },
      "README.md": "hello\n",
      "config/app.json": '{"a":1}',
      "docs/latest": { link: "../README.md" },
      empty: { dir: 0o750 },
    });
    const source = new MemorySource().add(a.blobs);
    const result = await stage(a, {}, source);
    expect(result).toEqual({ staged: true, blobsFetched: 3, bytesFetched: 31 });
    expect(await host.switchTo("web", a.id, "current")).toEqual({ previous: null });

    expect(await readlink(join(appDir(), "current"))).toBe(`releases/${a.id}`);
    const current = join(appDir(), "current");
    expect(await readFile(join(current, "bin/server"), "utf8")).toBe("#!/bin/sh\necho hi\n");
    expect(await readFile(join(current, "config/app.json"), "utf8")).toBe('{"a":1}');
    expect(await readlink(join(current, "docs/latest"))).toBe("../README.md");
    expect(await readFile(join(current, "docs/latest"), "utf8")).toBe("hello\n");
    // Files are read-only (they share an inode with the cache), execute bits kept.
    expect((await stat(join(current, "bin/server"))).mode & 0o7777).toBe(0o555);
    expect((await stat(join(current, "README.md"))).mode & 0o7777).toBe(0o444);
    expect((await stat(join(current, "empty"))).mode & 0o7777).toBe(0o750);
    expect((await stat(join(current, "bin"))).mode & 0o7777).toBe(0o755);
    // Same bytes, different modes: two inodes, so neither mode leaks into the other.
    const readme = await stat(join(current, "README.md"));
    const exec = await stat(join(current, "bin/same-as-readme"));
    expect(readme.ino).not.toBe(exec.ino);
    expect(exec.mode & 0o777).toBe(0o555);

    expect(await host.inventory()).toEqual([{ app: "web", releases: [a.id], current: a.id, slots: {} }]);
    // Staging it again does nothing.
    expect(await stage(a, {}, source)).toEqual({ staged: false, blobsFetched: 0, bytesFetched: 0 });
    expect(source.opened).toHaveLength(3);
  });

  it("fetches only the changed blob for a release that shares the rest, and hard-links the rest", async () => {
    const files: Tree = {};
    for (let i = 0; i < 100; i++)
      files[`src/file-${String(i).padStart(3, "0")}.js`] = `module ${i}\n`.repeat(20);
    const a = artifact(files);
    const b = artifact({ ...files, "src/file-042.js": "changed\n" });
    const source = new MemorySource().add(a.blobs).add(b.blobs);
    expect((await stage(a, {}, source)).blobsFetched).toBe(100);
    source.opened.length = 0;
    const second = await stage(b, {}, source);
    expect(second).toEqual({ staged: true, blobsFetched: 1, bytesFetched: 8 });
    expect(source.opened).toEqual([sha("changed\n")]);

    const sa = await stat(join(rel(a.id), "src/file-007.js"));
    const sb = await stat(join(rel(b.id), "src/file-007.js"));
    expect(sb.ino).toBe(sa.ino);
    expect(sb.nlink).toBe(3); // cache + two releases
    expect((await stat(join(rel(b.id), "src/file-042.js"))).ino).not.toBe(
      (await stat(join(rel(a.id), "src/file-042.js"))).ino,
    );
  });

  it("refuses a blob whose content does not match its digest, leaving nothing behind", async () => {
    const a = artifact({ "index.html": "the real page\n", "ok.txt": "fine\n" });
    const source = new MemorySource().add(a.blobs);
    const digest = sha("the real page\n");
    source.blobs.set(digest, Buffer.from("a forged page\n")); // same size, other bytes
    await expect(stage(a, {}, source)).rejects.toMatchObject({
      code: "E_VALIDATION",
      message: expect.stringContaining(`blob ${digest} does not match its digest`),
    });
    expect(await releaseDirs()).toEqual([]);
    expect(await cacheEntries()).not.toContain(digest);
    expect(await readdir(join(root, ".turnout", "blobs", "tmp")).catch(() => [])).toEqual([]);

    source.blobs.set(digest, Buffer.from("the real page\n plus more bytes"));
    await expect(stage(a, {}, source)).rejects.toMatchObject({ code: "E_VALIDATION" });
    expect(await releaseDirs()).toEqual([]);
  });

  it("runs before_switch in the staged tree; a failing hook leaves no release", async () => {
    const a = artifact({ "app.txt": "v1\n" });
    const lines: string[] = [];
    await host.stage(
      spec("web", a, {
        beforeSwitch: ["sh", "-c", 'echo "$GREETING from $(basename "$PWD")"; cat app.txt > built.txt'],
        env: { GREETING: "hello" },
      }),
      new MemorySource().add(a.blobs),
      (line) => lines.push(line),
      live(),
    );
    expect(lines.some((l) => /^hello from \.staging-/.test(l))).toBe(true);
    expect(await readFile(join(rel(a.id), "built.txt"), "utf8")).toBe("v1\n");

    const b = artifact({ "app.txt": "v2\n" });
    await expect(stage(b, { beforeSwitch: ["sh", "-c", "echo nope; exit 3"] })).rejects.toMatchObject({
      code: "E_VALIDATION",
      message: expect.stringContaining("exit code 3"),
    });
    expect(await releaseDirs()).toEqual([a.id]);
    await expect(host.switchTo("web", b.id, "current")).rejects.toMatchObject({ code: "E_NOT_FOUND" });
  });

  it("stops promptly when aborted mid-fetch and leaves no release", async () => {
    const a = artifact({ "a.bin": "x".repeat(1000), "b.bin": "y".repeat(1000) });
    const controller = new AbortController();
    const slow: BlobSource = {
      async open(digest) {
        const data = a.blobs.get(digest)!;
        // Half the blob, then nothing: the download never finishes by itself.
        const stream = new Readable({ read() {} });
        stream.push(data.subarray(0, 500));
        setTimeout(() => controller.abort(), 50);
        return stream;
      },
    };
    const started = Date.now();
    await expect(host.stage(spec("web", a), slow, noLog, controller.signal)).rejects.toThrow();
    expect(Date.now() - started).toBeLessThan(2000);
    expect(await releaseDirs()).toEqual([]);
    expect(await cacheEntries()).toEqual([]);
    expect(await readdir(join(root, ".turnout", "blobs", "tmp")).catch(() => [])).toEqual([]);
  });

  it("stages releases of one app concurrently; the same release twice is staged once", async () => {
    const a = artifact({ "v.txt": "a", "common.txt": "same" });
    const b = artifact({ "v.txt": "b", "common.txt": "same" });
    const results = await Promise.all([stage(a), stage(b), stage(a)]);
    expect(results.map((r) => r.staged).sort()).toEqual([false, true, true]);
    expect((await releaseDirs()).sort()).toEqual([a.id, b.id].sort());
    expect((await host.inventory())[0]!.releases.sort()).toEqual([a.id, b.id].sort());
  });

  it("sweeps the staging directory a crash left behind", async () => {
    const a = artifact({ "a.txt": "a" });
    await mkdir(join(appDir(), "releases", `.staging-${a.id}-dead00`, "half"), { recursive: true });
    await stage(a);
    expect(await releaseDirs()).toEqual([a.id]);
  });

  it("refuses to switch to a release that is not staged, leaving current as it was", async () => {
    const a = artifact({ "a.txt": "a" });
    await stage(a);
    await host.switchTo("web", a.id, "current");
    await expect(host.switchTo("web", "0123456789abcdef", "current")).rejects.toMatchObject({
      code: "E_NOT_FOUND",
    });
    // A half-staged one under its staging name does not count either.
    await mkdir(join(appDir(), "releases", ".staging-fedcba9876543210-x"));
    await expect(host.switchTo("web", "fedcba9876543210", "current")).rejects.toMatchObject({
      code: "E_NOT_FOUND",
    });
    expect(await readlink(join(appDir(), "current"))).toBe(`releases/${a.id}`);
    await rm(join(appDir(), "releases", ".staging-fedcba9876543210-x"), { recursive: true });
  });

  it("switches atomically: a reader never sees current missing or half-made", async () => {
    const a = artifact({ "v.txt": "a" });
    const b = artifact({ "v.txt": "b" });
    await stage(a);
    await stage(b);
    await host.switchTo("web", a.id, "current");
    const link = join(appDir(), "current");
    const valid = [`releases/${a.id}`, `releases/${b.id}`];
    const worker = new Worker(
      `const { parentPort, workerData } = require("node:worker_threads");
       const fs = require("node:fs");
       let reads = 0, bad = 0, stop = false, sample = "";
       parentPort.on("message", () => { stop = true; });
       const loop = () => {
         for (let i = 0; i < 2000; i++) {
           reads++;
           try {
             const t = fs.readlinkSync(workerData.link);
             if (!workerData.valid.includes(t)) { bad++; sample = t; }
             else fs.readFileSync(workerData.link + "/v.txt");
           } catch (e) { bad++; sample = e.code; }
         }
         if (stop) parentPort.postMessage({ reads, bad, sample }); else setImmediate(loop);
       };
       loop();`,
      { eval: true, workerData: { link, valid } },
    );
    for (let i = 0; i < 200; i++) await host.switchTo("web", i % 2 === 0 ? b.id : a.id, "current");
    const done = new Promise<{ reads: number; bad: number; sample: string }>((r) =>
      worker.once("message", r),
    );
    worker.postMessage("stop");
    const result = await done;
    await worker.terminate();
    expect(result.bad, `bad read: ${result.sample}`).toBe(0);
    expect(result.reads).toBeGreaterThan(1000);
    expect(await readlink(link)).toBe(`releases/${a.id}`);
    expect((await readdir(appDir())).filter((n) => n.includes(".tmp-"))).toEqual([]);
  });

  it("points slots at releases side by side and promotes a slot to current", async () => {
    const a = artifact({ "v.txt": "a" });
    const b = artifact({ "v.txt": "b" });
    await stage(a);
    await stage(b);
    await host.switchTo("web", a.id, "current");
    expect(await host.switchTo("web", b.id, "next")).toEqual({ previous: null });
    expect(await readlink(join(appDir(), "slots", "next"))).toBe(`../releases/${b.id}`);
    expect(await readFile(join(appDir(), "slots", "next", "v.txt"), "utf8")).toBe("b");
    expect(await host.promoteSlot("web", "next")).toEqual({ previous: a.id, current: b.id });
    expect(await readFile(join(appDir(), "current", "v.txt"), "utf8")).toBe("b");
    expect(await host.inventory()).toEqual([
      { app: "web", releases: [a.id, b.id], current: b.id, slots: { next: b.id } },
    ]);
    await expect(host.promoteSlot("web", "missing")).rejects.toMatchObject({ code: "E_NOT_FOUND" });
    await expect(host.promoteSlot("web", "current")).rejects.toMatchObject({ code: "E_VALIDATION" });
  });
});

describe("shared paths", () => {
  it("links shared paths into every release; state written through one is seen through the next", async () => {
    const a = artifact({ "app.txt": "v1", "config/app.env": "MODE=default\n", "storage/.keep": "" });
    const b = artifact({ "app.txt": "v2", "config/app.env": "MODE=other\n" });
    const shared = ["storage", "config/app.env"];
    await stage(a, { shared });
    await host.switchTo("web", a.id, "current");
    await writeFile(join(appDir(), "current", "storage", "upload.txt"), "kept");
    await stage(b, { shared });
    await host.switchTo("web", b.id, "current");

    expect(await readFile(join(appDir(), "current", "storage", "upload.txt"), "utf8")).toBe("kept");
    expect(await readFile(join(rel(a.id), "storage", "upload.txt"), "utf8")).toBe("kept");
    expect((await lstat(join(rel(b.id), "storage"))).isSymbolicLink()).toBe(true);
    expect(await readlink(join(rel(b.id), "config", "app.env"))).toBe("../../../shared/config/app.env");
    // The first release seeded the shared file; the second did not overwrite it, and it is writable.
    expect(await readFile(join(appDir(), "current", "config", "app.env"), "utf8")).toBe("MODE=default\n");
    await writeFile(join(appDir(), "current", "config", "app.env"), "MODE=edited\n");
    expect(await readFile(join(appDir(), "shared", "config", "app.env"), "utf8")).toBe("MODE=edited\n");
    // The release's own storage/.keep was replaced by the link, not merged.
    expect(await readdir(join(appDir(), "shared", "storage"))).toEqual(["upload.txt"]);
  });
});

describe("prune", () => {
  it("keeps the newest releases by staging order (not mtime), and every pointed-at one", async () => {
    const ids: string[] = [];
    for (let i = 1; i <= 8; i++) {
      const a = artifact({ "v.txt": `release ${i}` });
      await stage(a);
      ids.push(a.id);
    }
    await host.switchTo("web", ids[7]!, "current");
    await host.switchTo("web", ids[1]!, "old");
    // The oldest looks newest by mtime: it must still go.
    const future = new Date(Date.now() + 3600_000);
    await utimes(rel(ids[0]!), future, future);

    const { removed } = await host.prune("web", 5);
    expect(removed).toEqual([ids[0], ids[2]]);
    const left = (await host.inventory())[0]!;
    expect(left.releases).toEqual([ids[1], ...ids.slice(3)]);
    expect(left.current).toBe(ids[7]);
    expect(left.slots).toEqual({ old: ids[1] });

    // keep 0 removes everything no pointer holds.
    expect((await host.prune("web", 0)).removed).toEqual(ids.slice(3, 7));
    expect(await releaseDirs()).toEqual([ids[1], ids[7]].sort());
    await expect(host.prune("web", -1)).rejects.toMatchObject({ code: "E_VALIDATION" });
  });

  it("collects cache blobs no release links any more", async () => {
    const a = artifact({ "common.txt": "common", "only-a.txt": "only in a" });
    const b = artifact({ "common.txt": "common", "only-b.txt": "only in b" });
    await stage(a);
    await stage(b);
    await host.switchTo("web", b.id, "current");
    expect((await cacheEntries()).sort()).toEqual([sha("common"), sha("only in a"), sha("only in b")].sort());
    expect(await host.prune("web", 1)).toEqual({ removed: [a.id] });
    expect((await cacheEntries()).sort()).toEqual([sha("common"), sha("only in b")].sort());
    // Staging a again fetches just what was collected.
    const source = new MemorySource().add(a.blobs);
    expect((await stage(a, {}, source)).blobsFetched).toBe(1);
  });

  it("with the cache on another filesystem, the cache keeps copies and nothing in use is collected", async () => {
    const shm = await mkdtemp("/dev/shm/turnout-cache-");
    try {
      const split = new LocalHostOps({ name: "h2", root, cacheDir: shm, fsyncs: false });
      const a = artifact({ "common.txt": "common", "only-a.txt": "only in a" });
      const b = artifact({ "common.txt": "common", "only-b.txt": "only in b" });
      const source = new MemorySource().add(a.blobs).add(b.blobs);
      expect((await split.stage(spec("web", a), source, noLog, live())).blobsFetched).toBe(2);
      const second = await split.stage(spec("web", b), source, noLog, live());
      expect(second.blobsFetched).toBe(1); // common.txt came from the cache's copy
      expect(await readFile(join(rel(b.id), "common.txt"), "utf8")).toBe("common");
      expect(await readFile(join(shm, sha("common").slice(0, 2), sha("common")), "utf8")).toBe("common");
      await split.switchTo("web", b.id, "current");
      await split.prune("web", 1);
      expect(await split.collectGarbage()).toBeNull();
      expect(await readFile(join(shm, sha("only in b").slice(0, 2), sha("only in b")), "utf8")).toBe(
        "only in b",
      );
    } finally {
      await rm(shm, { recursive: true, force: true });
    }
  });
});

describe("hostile input", () => {
  it("refuses bad names, ids and paths before touching the disk", async () => {
    const a = artifact({ "a.txt": "a" });
    const source = new MemorySource().add(a.blobs);
    const attempt = (s: Partial<StageSpec>) => host.stage({ ...spec("web", a), ...s }, source, noLog, live());
    const file = (path: string): ArtifactEntry => ({
      path,
      type: "file",
      mode: 0o644,
      size: 1,
      sha256: sha("a"),
    });

    await expect(attempt({ app: "../x" })).rejects.toMatchObject({ code: "E_INVALID_NAME" });
    await expect(attempt({ releaseId: "abc" })).rejects.toMatchObject({ code: "E_VALIDATION" });
    await expect(attempt({ releaseId: "../../../etc/aaaa" })).rejects.toMatchObject({ code: "E_VALIDATION" });
    await expect(
      attempt({ manifest: { version: 1, entries: [file("../etc/passwd")] } }),
    ).rejects.toMatchObject({
      code: "E_VALIDATION",
    });
    await expect(attempt({ manifest: { version: 1, entries: [file("/etc/passwd")] } })).rejects.toMatchObject(
      {
        code: "E_VALIDATION",
      },
    );
    await expect(
      attempt({
        manifest: { version: 1, entries: [{ path: "escape", type: "symlink", target: "../../etc" }] },
      }),
    ).rejects.toMatchObject({ code: "E_VALIDATION" });
    // A file "under" a symlink would be written wherever the link points.
    await expect(
      attempt({
        manifest: {
          version: 1,
          entries: [
            { path: "d", type: "symlink", target: "e" },
            file("d/x"),
            { path: "e", type: "dir", mode: 0o755 },
          ],
        },
      }),
    ).rejects.toMatchObject({ code: "E_VALIDATION" });
    // Deeper under a link or a file, with the directories between never listed.
    await expect(
      attempt({
        manifest: { version: 1, entries: [{ path: "d", type: "symlink", target: "." }, file("d/y/z/x")] },
      }),
    ).rejects.toMatchObject({
      code: "E_VALIDATION",
      message: expect.stringContaining("inside d, which is a symlink"),
    });
    await expect(
      attempt({ manifest: { version: 1, entries: [file("f"), file("f/g/h")] } }),
    ).rejects.toMatchObject({
      code: "E_VALIDATION",
      message: expect.stringContaining("inside f, which is a file"),
    });
    // Entries of any shape arrive over the agent protocol: each is refused on its own terms.
    const shapes: unknown[] = [
      null,
      "a.txt",
      { path: "a.txt", type: "device" },
      { path: "a.txt", type: "file", mode: "644", size: 1, sha256: sha("a") },
      { path: "a.txt", type: "file", mode: 0o644, size: -1, sha256: sha("a") },
      { path: "d", type: "dir", mode: 1e9 },
      { path: "l", type: "symlink", target: 7 },
      { path: 42, type: "dir", mode: 0o755 },
    ];
    for (const entry of shapes) {
      await expect(
        attempt({ manifest: { version: 1, entries: [entry as ArtifactEntry] } }),
      ).rejects.toMatchObject({ code: "E_VALIDATION" });
    }
    await expect(attempt({ shared: ["../../outside"] })).rejects.toMatchObject({ code: "E_VALIDATION" });
    await expect(attempt({ beforeSwitch: [] })).rejects.toMatchObject({ code: "E_VALIDATION" });
    await expect(attempt({ env: { "BAD=NAME": "x" } })).rejects.toMatchObject({ code: "E_VALIDATION" });

    await expect(host.switchTo("web", a.id, "a/b")).rejects.toMatchObject({ code: "E_INVALID_NAME" });
    await expect(host.switchTo("web", a.id, "../current")).rejects.toMatchObject({ code: "E_INVALID_NAME" });
    await expect(host.switchTo("../web", a.id, "current")).rejects.toMatchObject({ code: "E_INVALID_NAME" });
    await expect(host.prune("..", 5)).rejects.toMatchObject({ code: "E_INVALID_NAME" });
    await expect(host.run("../x", ["true"], {}, 1000, noLog, live())).rejects.toMatchObject({
      code: "E_INVALID_NAME",
    });

    expect(source.opened).toEqual([]);
    expect(await readdir(root)).toEqual([]);
  });

  it("does not work through a planted symlink in the layout", async () => {
    const outside = await mkdtemp(join(tmpdir(), "turnout-outside-"));
    try {
      await symlink(outside, join(root, "web"));
      const a = artifact({ "a.txt": "a" });
      await expect(stage(a)).rejects.toMatchObject({ code: "E_CONFLICT" });
      expect(await readdir(outside)).toEqual([]);
      expect(await host.inventory()).toEqual([]);
    } finally {
      await rm(join(root, "web"));
      await rm(outside, { recursive: true, force: true });
    }
  });
});
