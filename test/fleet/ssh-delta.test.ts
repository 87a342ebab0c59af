import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import {
  appendFileSync,
  chmodSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import path from "node:path";
import { gzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cachedFileMode } from "../../src/agent/host-layout/blob-cache.js";
import { type ArtifactManifest, manifestDigest } from "../../src/domain/artifact.js";
import type { StageResult, StageSpec } from "../../src/providers/fleet/host-ops.js";
import { type ExecOptions, SshConnection } from "../../src/providers/fleet/ssh/ssh-connection.js";
import { SshHostOps } from "../../src/providers/fleet/ssh/ssh-host-ops.js";
import { planForHost } from "../../src/providers/fleet/ssh/ssh-validate.js";
import { cacheName } from "../../src/providers/fleet/ssh/stage-input.js";
import { stageTar } from "../../src/providers/fleet/ssh/stage-tar.js";
import {
  type MemoryEntry,
  type MemoryRelease,
  memoryRelease,
  type SshdInstance,
  startSshd,
} from "../helpers/sshd.js";

/**
 * Issue 15 point 3 on SSH hosts: a host keeps the listing and the stage tar
 * of each release it staged (<root>/.turnout/listings, .../stagetars) and
 * the next release is sent as the difference from the one `current` points
 * at (the listing's changed lines, a patch of the tar): a one-file change of
 * a 3,000-file release costs under 20 KB of ssh stdin per host. The staged
 * tree is exactly the planned one whatever happened to the base release on
 * the host (it is never read), and a host without a usable kept listing or
 * tar gets the whole tree.
 */
let sshd: SshdInstance;
let host: SshHostOps;
const never = new AbortController().signal;
/** The server's artifact store, as far as these tests go: digest → app and manifest. */
const stored = new Map<string, { app: string; manifest: ArtifactManifest }>();

/** Bytes written to the stdin of every ssh process, by operation. */
const sent = new Map<string, number>();
const originalExec = SshConnection.prototype.exec;
/** Bytes of the remote command lines of the sessions (the launcher of the kept script, or the whole script). */
let commandBytes = 0;
type Run = (command: string, options: ExecOptions) => Promise<unknown>;
const connection = SshConnection.prototype as unknown as { run: Run };
const originalRun = connection.run;
/** Runs between the `bases` answer and the `missing` question, once. */
let afterBases: (() => void) | undefined;

beforeAll(async () => {
  connection.run = function (this: SshConnection, command: string, options: ExecOptions) {
    commandBytes += Buffer.byteLength(command);
    return originalRun.call(this, command, options);
  };
  SshConnection.prototype.exec = async function (this: SshConnection, op, args, options: ExecOptions) {
    const count = (bytes: number) => sent.set(op, (sent.get(op) ?? 0) + bytes);
    const input = options.input;
    let counted = input;
    if (typeof input === "string" || Buffer.isBuffer(input)) count(Buffer.byteLength(input));
    else if (typeof input === "function")
      counted = (stdin) => {
        const write = stdin.write.bind(stdin) as (chunk: Buffer | string, ...rest: unknown[]) => boolean;
        stdin.write = ((chunk: Buffer | string, ...rest: unknown[]) => {
          count(Buffer.byteLength(chunk));
          return write(chunk, ...rest);
        }) as typeof stdin.write;
        return input(stdin);
      };
    const result = await originalExec.call(this, op, args, {
      ...options,
      ...(counted ? { input: counted } : {}),
    });
    if (op === "bases" && afterBases) {
      const hook = afterBases;
      afterBases = undefined;
      hook();
    }
    return result;
  };
  sshd = await startSshd();
  host = new SshHostOps(sshd.config("web-1"), { manifests: async (digest) => stored.get(digest) });
});
afterAll(async () => {
  SshConnection.prototype.exec = originalExec;
  connection.run = originalRun;
  await host?.close();
  await sshd?.stop();
});

/** Bytes sent but the blobs. */
const overhead = () => totalSent() - (sent.get("receive") ?? 0);
const totalSent = () => [...sent.values()].reduce((a, b) => a + b, 0);
const listingsDir = () => path.join(sshd.root, ".turnout", "listings");
const tarsDir = () => path.join(sshd.root, ".turnout", "stagetars");
/** The name a host keeps a release's stage tar under: the artifact, and the digest of the tar the server makes. */
const tarName = async (made: MemoryRelease) =>
  `${manifestDigest(made.manifest)}-${(await stageTar(planForHost(made.manifest, []))).digest}`;
const releaseDir = (app: string, id: string) => path.join(sshd.root, app, "releases", id);

/** 3,000 small files in nested directories, with spaces, unicode, a leading dash, an executable and links. */
function bigTree(salt: string): Record<string, MemoryEntry> {
  const tree: Record<string, MemoryEntry> = {};
  for (let i = 0; i < 3000; i++) {
    const dir = [`pkg ${i % 9}`, `mod${i % 7}`, `ünï ${i % 5}`].slice(0, i % 4).join("/");
    tree[`${dir ? `${dir}/` : ""}f${i}.txt`] = `file ${i} ${salt} ${"x".repeat(i % 200)}\n`;
  }
  tree["ファイル with space.txt"] = `unicode ${salt}\n`;
  tree["-dash.txt"] = `dash ${salt}\n`;
  tree["bin/run"] = { content: `#!/bin/sh\necho ${salt}\n`, mode: 0o755 };
  tree["private"] = { dir: 0o700 };
  tree["latest"] = { link: "bin/run" };
  return tree;
}

function release(app: string, tree: Record<string, MemoryEntry>): MemoryRelease {
  const made = memoryRelease(tree);
  stored.set(manifestDigest(made.manifest), { app, manifest: made.manifest });
  return made;
}

async function stage(
  app: string,
  made: MemoryRelease,
  lines: string[] = [],
  ops: SshHostOps = host,
): Promise<StageResult> {
  const spec: StageSpec = {
    app,
    releaseId: made.id,
    manifest: made.manifest,
    shared: [],
    env: {},
    timeoutMs: 60_000,
  };
  sent.clear();
  commandBytes = 0;
  const result = await ops.stage(spec, made.source, (line) => lines.push(line), never);
  await ops.switchTo(app, made.id, "current");
  return result;
}

/** The release on disk, one line per entry: kind, mode, content digest or link target; files must be cache inodes. */
function treeOnDisk(dir: string): string[] {
  const lines: string[] = [];
  const walk = (rel: string) => {
    for (const name of readdirSync(path.join(dir, rel))) {
      const p = rel ? `${rel}/${name}` : name;
      const full = path.join(dir, p);
      const st = lstatSync(full);
      const mode = (st.mode & 0o7777).toString(8);
      if (st.isDirectory()) {
        lines.push(`d ${mode} ${p}`);
        walk(p);
      } else if (st.isSymbolicLink()) lines.push(`l ${p} -> ${readlinkSync(full)}`);
      else {
        const sha = createHash("sha256").update(readFileSync(full)).digest("hex");
        const name = cacheName(sha, st.mode);
        const blob = path.join(sshd.root, ".turnout", "blobs", name.slice(0, 2), name);
        lines.push(`f ${mode} ${sha} ${p}${statSync(blob).ino === st.ino ? "" : " (not the cache inode)"}`);
      }
    }
  };
  walk("");
  return lines.sort();
}

function plannedTree(made: MemoryRelease): string[] {
  const plan = planForHost(made.manifest, []);
  return [
    ...plan.dirs.map((d) => `d ${(d.mode & 0o777).toString(8)} ${d.path}`),
    ...plan.files.map((f) => `f ${cachedFileMode(f.mode).toString(8)} ${f.sha256} ${f.path}`),
    ...plan.links.map((l) => `l ${l.path} -> ${l.target}`),
  ].sort();
}

function expectExact(app: string, made: MemoryRelease) {
  expect(treeOnDisk(releaseDir(app, made.id))).toEqual(plannedTree(made));
}

/** A one-file change: 8 KiB of new bytes at a path with a space and unicode. */
function oneFileChange(tree: Record<string, MemoryEntry>, salt: string): Record<string, MemoryEntry> {
  return { ...tree, "ファイル with space.txt": `${salt}\n`.padEnd(8192, "z") };
}

describe("SSH staging from a kept listing", () => {
  it("sends a one-file change of a 3,000-file release in under 20 KB and stages exactly the planned tree", async () => {
    const tree = bigTree("one");
    const v1 = release("big", tree);
    const first = await stage("big", v1);
    expect(first.staged).toBe(true);
    expect(first.manifest).toBeUndefined();
    // The whole tree went: well over the budget of a small change.
    expect(totalSent()).toBeGreaterThan(100_000);
    expectExact("big", v1);
    expect(readdirSync(listingsDir())).toHaveLength(1);
    // The host keeps the stage tar under the digest the server makes again from the manifest.
    expect(readdirSync(tarsDir())).toEqual([await tarName(v1)]);

    const v2 = release("big", oneFileChange(tree, "two"));
    const lines: string[] = [];
    const second = await stage("big", v2, lines);
    expect(second).toMatchObject({ staged: true, blobsFetched: 1, bytesFetched: 8192, manifest: "diff" });
    expect(lines.join("\n")).toContain(`from release ${v1.id} (listing difference: 1 lines out, 1 in)`);
    // One header record changed: copy, one new record, copy.
    expect(lines.join("\n")).toContain(`the tree as a patch of release ${v1.id}'s (3 ranges, 512 bytes new)`);
    expect(totalSent()).toBeLessThan(20_000);
    // Of which the changed file itself is 8 KiB: the rest is the two small questions and a one-entry tar.
    expect(sent.get("receive")).toBeGreaterThan(8192);
    expect(totalSent() - (sent.get("receive") ?? 0)).toBeLessThan(2_000);
    // With the sessions' command lines (the kept script's launcher, not the script): under 20 KB all told.
    expect(commandBytes).toBeGreaterThan(0);
    expect(totalSent() + commandBytes).toBeLessThan(20_000);
    expectExact("big", v2);
    expect(readdirSync(listingsDir())).toHaveLength(2);
    expect(readdirSync(tarsDir()).sort()).toEqual([await tarName(v1), await tarName(v2)].sort());
    // Nothing of the staging is left in the cache's temporary directory.
    expect(
      readdirSync(path.join(sshd.root, ".turnout", "blobs", "tmp")).filter((n) => n.startsWith("tree-")),
    ).toEqual([]);

    // The whole-release check of a full `missing` question holds for it: a host
    // staging without bases (no manifests) finds it already staged.
    const plain = new SshHostOps(sshd.config("web-1"));
    try {
      expect(await stage("big", v2, [], plain)).toEqual({ staged: false, blobsFetched: 0, bytesFetched: 0 });
    } finally {
      await plain.close();
    }
  }, 300_000);

  it("sends the whole tree when the kept listing is deleted or damaged", async () => {
    const tree = smallTree("fallback");
    const v1 = release("fb", tree);
    await stage("fb", v1);

    // Deleted: no base to offer.
    rmSync(listingsDir(), { recursive: true });
    const v2 = release("fb", oneFileChange(tree, "v2"));
    const deleted = await stage("fb", v2);
    expect(deleted.staged).toBe(true);
    expect(deleted.manifest).toBeUndefined();
    const whole = overhead();
    expectExact("fb", v2);

    // Damaged: offered by nobody (the host hashes it), removed.
    const [kept] = readdirSync(listingsDir()).filter((name) => name.startsWith(v2.id));
    appendFileSync(path.join(listingsDir(), kept!), "x\tf 00 1\n");
    const v3 = release("fb", oneFileChange(tree, "v3"));
    const damaged = await stage("fb", v3);
    expect(damaged.manifest).toBeUndefined();
    expectExact("fb", v3);
    expect(readdirSync(listingsDir()).some((name) => name === kept)).toBe(false);

    // Damaged after the host offered it: the difference is refused, the whole listing follows.
    const v4 = release("fb", oneFileChange(tree, "v4"));
    afterBases = () => {
      const [name] = readdirSync(listingsDir()).filter((n) => n.startsWith(v3.id));
      writeFileSync(path.join(listingsDir(), name!), "damaged\n");
    };
    const lines: string[] = [];
    const late = await stage("fb", v4, lines);
    expect(afterBases).toBeUndefined();
    expect(late.manifest).toBeUndefined();
    expect(lines.join("\n")).toContain("the host no longer keeps the listing of");
    expectExact("fb", v4);

    // And the next change goes as a difference again.
    const v5 = release("fb", oneFileChange(tree, "v5"));
    expect((await stage("fb", v5)).manifest).toBe("diff");
    expectExact("fb", v5);
    // The whole listing and tree cost several times what the difference does.
    expect(whole).toBeGreaterThan(3 * overhead());
  }, 300_000);

  it("sends added directories, removed files, a repointed link and a mode change as a difference", async () => {
    const tree = smallTree("kinds");
    const v1 = release("kinds", tree);
    await stage("kinds", v1);
    const { "lib/deep/c.txt": _gone, "many/f3.txt": _gone2, ...rest } = tree;
    const v2 = release("kinds", {
      ...rest,
      "new dir/ü/x.txt": "new\n",
      empty: { dir: 0o750 },
      private: { dir: 0o755 },
      latest: { link: "a.txt" },
      "a.txt": { content: "alpha kinds\n", mode: 0o755 },
    });
    const lines: string[] = [];
    const second = await stage("kinds", v2, lines);
    expect(second.manifest).toBe("diff");
    expect(lines.join("\n")).toMatch(/listing difference: [0-9]+ lines out, [0-9]+ in/);
    expectExact("kinds", v2);
  }, 300_000);

  it("builds the new release from the kept tar alone: nothing of the base release directory leaks in", async () => {
    const tree = smallTree("leak");
    const v1 = release("leak", tree);
    await stage("leak", v1);
    const base = releaseDir("leak", v1.id);
    // An app writes into its release, a hook changes modes, a file and a link are replaced.
    writeFileSync(path.join(base, "written by the app.log"), "log\n");
    mkdirSync(path.join(base, "tmp", "cache"), { recursive: true });
    writeFileSync(path.join(base, "tmp", "cache", "x"), "x\n");
    chmodSync(path.join(base, "tmp"), 0o500);
    chmodSync(path.join(base, "private"), 0o755);
    chmodSync(path.join(base, "lib"), 0o777);
    rmSync(path.join(base, "lib", "b.txt"));
    writeFileSync(path.join(base, "lib", "b.txt"), "BRAVO leak\n");
    rmSync(path.join(base, "latest"));
    writeFileSync(path.join(base, "latest"), "a file now\n");

    const v2 = release("leak", oneFileChange(tree, "v2"));
    const lines: string[] = [];
    const second = await stage("leak", v2, lines);
    expect(second.manifest).toBe("diff");
    expect(lines.join("\n")).toContain(`the tree as a patch of release ${v1.id}'s`);
    expectExact("leak", v2);
    expect(readFileSync(path.join(releaseDir("leak", v2.id), "lib", "b.txt"), "utf8")).toBe("bravo leak\n");
    chmodSync(path.join(base, "tmp"), 0o755);
  }, 300_000);

  it("sends the whole tree when the kept stage tar is deleted or damaged by hand", async () => {
    const tree = smallTree("tars");
    const v1 = release("tars", tree);
    await stage("tars", v1);

    // Deleted: the host names none, the listing still goes as a difference, the tree whole.
    rmSync(tarsDir(), { recursive: true });
    const v2 = release("tars", oneFileChange(tree, "v2"));
    const lines: string[] = [];
    const deleted = await stage("tars", v2, lines);
    expect(deleted.staged).toBe(true);
    expect(deleted.manifest).toBeUndefined();
    expect(lines.join("\n")).toContain(`from release ${v1.id} (listing difference`);
    expect(lines.join("\n")).not.toContain("as a patch");
    expectExact("tars", v2);
    expect(readdirSync(tarsDir())).toEqual([await tarName(v2)]);

    // Damaged: named by the host (not hashed then), refused when used, removed; the whole tree follows.
    const kept = path.join(tarsDir(), await tarName(v2));
    const bytes = readFileSync(kept);
    bytes[700] = bytes[700]! ^ 1;
    writeFileSync(kept, bytes);
    const v3 = release("tars", oneFileChange(tree, "v3"));
    lines.length = 0;
    const damaged = await stage("tars", v3, lines);
    expect(damaged.staged).toBe(true);
    expect(damaged.manifest).toBeUndefined();
    expect(lines.join("\n")).toContain(
      `the kept stage tar of ${v2.id} is damaged (removed): staging the whole tree`,
    );
    expectExact("tars", v3);
    expect(readdirSync(tarsDir())).toEqual([await tarName(v3)]);

    // A tar cut short is refused the same way.
    const v3tar = path.join(tarsDir(), await tarName(v3));
    writeFileSync(v3tar, readFileSync(v3tar).subarray(0, 1024));
    const v4 = release("tars", oneFileChange(tree, "v4"));
    lines.length = 0;
    expect((await stage("tars", v4, lines)).manifest).toBeUndefined();
    expect(lines.join("\n")).toContain("is damaged (removed)");
    expectExact("tars", v4);

    // And the next change goes as a patch again.
    const v5 = release("tars", oneFileChange(tree, "v5"));
    expect((await stage("tars", v5)).manifest).toBe("diff");
    expectExact("tars", v5);
  }, 300_000);

  it("patches the tree where the release directory is on another file system than the cache (files copied)", async () => {
    const dir = path.join(sshd.root, "copied");
    mkdirSync(dir);
    // A file system of its own for the app directory (the tests run as root, as in CI).
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=16m", "turnout-delta-test", dir]);
    try {
      const tree = smallTree("copied");
      const v1 = release("copied", tree);
      await stage("copied", v1);
      const v2 = release("copied", oneFileChange(tree, "copied v2"));
      const lines: string[] = [];
      expect((await stage("copied", v2, lines)).manifest).toBe("diff");
      expect(lines.join("\n")).toContain("files are copied");
      // Copies, not cache inodes, and otherwise exactly the planned tree.
      const copies = treeOnDisk(releaseDir("copied", v2.id));
      expect(
        copies
          .filter((line) => line.startsWith("f "))
          .every((line) => line.endsWith(" (not the cache inode)")),
      ).toBe(true);
      expect(copies.map((line) => line.replace(/ \(not the cache inode\)$/, ""))).toEqual(plannedTree(v2));
    } finally {
      execFileSync("umount", ["-l", dir]);
    }
  }, 300_000);

  it("never patches from the stage tar of another app", async () => {
    const tree = smallTree("apps");
    const a1 = release("app-a", tree);
    await stage("app-a", a1);
    // App b's first release is a one-file change of a's: a's tar would make a small patch, but is not b's.
    const b1 = release("app-b", oneFileChange(tree, "b1"));
    const lines: string[] = [];
    const first = await stage("app-b", b1, lines);
    expect(first.staged).toBe(true);
    expect(first.manifest).toBeUndefined();
    expect(lines.join("\n")).not.toContain("as a patch");
    expectExact("app-b", b1);
    // Its next release is patched from its own.
    const b2 = release("app-b", oneFileChange(tree, "b2"));
    lines.length = 0;
    expect((await stage("app-b", b2, lines)).manifest).toBe("diff");
    expect(lines.join("\n")).toContain(`the tree as a patch of release ${b1.id}'s`);
    expectExact("app-b", b2);
  }, 300_000);
});

describe("SSH listing input on the host (defence in depth)", () => {
  it("refuses listings the server would never send, and says when a base is not there", async () => {
    const good = release("hostile", smallTree("hostile"));
    await stage("hostile", good);
    const connection = new SshConnection(sshd.config("web-1"));
    const sha = "a".repeat(64);
    const art = `${good.id}${"0".repeat(48)}`;
    const digestOf = (lines: string[]) =>
      createHash("sha256")
        .update(lines.map((l) => `${l}\n`).join(""))
        .digest("hex");
    const missing = (body: string[], tail = "END\n") =>
      connection.exec("missing", [sshd.root, "hostile", "-", good.id, art], {
        input: gzipSync(`${body.join("\n")}\n${tail}`),
        timeoutMs: 30_000,
      });
    const full = (lines: string[]) => ["M full", `N ${digestOf(lines)}`, ...lines.map((l) => `+ ${l}`)];
    try {
      for (const lines of [
        ["../escaped\tf " + sha + " 1"],
        ["/absolute\td 755"],
        ["a/./b\td 755"],
        ["a//b\td 755"],
        ["back\\slash\tl x"],
        ["ctl\rchar\tf " + sha + " 1"],
        ["no tab f " + sha + " 1"],
        ["mode\td 055"],
        ["sized\tf " + sha + " -1"],
      ]) {
        const result = await missing(full(lines));
        expect({ lines, exitCode: result.exitCode }).toEqual({ lines, exitCode: 10 });
      }
      // Cut short, or a whole listing that is not what its digest says: refused.
      expect((await missing(full(["ok.txt\tf " + sha + " 1"]), "")).exitCode).toBe(10);
      expect((await missing(["M full", `N ${sha}`, "+ ok.txt\tf " + sha + " 1"])).exitCode).toBe(10);
      expect((await missing(["N " + sha, "M full"])).exitCode).toBe(10);
      // A difference from a base the host does not keep: it says so, and the server sends it whole.
      const nobase = await missing([`M delta ${sha} ${sha}`, `N ${sha}`, "- a\td 755"]);
      expect(nobase.exitCode).toBe(0);
      expect(nobase.stdout.trim().split("\n").at(-1)).toBe("ok nobase");

      const stageWith = (lines: string[], tail: Buffer = Buffer.alloc(0)) =>
        connection.exec(
          "stage",
          [sshd.root, "hostile", "-", "00000000000000aa", "30", "00000000000000bb", "new"],
          {
            input: Buffer.concat([Buffer.from(`${[...lines, "TAR"].join("\n")}\n`), tail]),
            timeoutMs: 30_000,
          },
        );
      const own = `00000000000000aa${"0".repeat(48)}`;
      const emptyTar = Buffer.alloc(1024);
      const emptyDigest = createHash("sha256").update(emptyTar).digest("hex");
      for (const lines of [
        // No digest of the tree, or a malformed one, or the artifact of another release.
        [],
        [`K ${own}`],
        [`K ${sha} ${sha}`],
        [`K - ${sha}`, `P ../${sha.slice(3)}`],
        // Ranges without a base, or more than the bound.
        [`K - ${sha}`, "C 0 1"],
        [`K - ${sha}`, `P ${sha}`, ...Array.from({ length: 65 }, () => "L 1")],
      ]) {
        const result = await stageWith(lines);
        expect({ lines: lines.slice(0, 3), exitCode: result.exitCode }).toEqual({
          lines: lines.slice(0, 3),
          exitCode: 10,
        });
      }
      // A whole tree that is not what its digest says.
      expect((await stageWith([`K - ${sha}`], gzipSync(emptyTar))).exitCode).toBe(10);
      // A patch of a tar the host does not keep: it says so, and the server sends the tree whole.
      expect(
        (await stageWith([`K ${own} ${emptyDigest}`, `P ${sha}`, "L 2"], gzipSync(emptyTar))).stdout,
      ).toMatch(/ok fallback\n$/);
      expect(
        readdirSync(path.join(sshd.root, ".turnout", "blobs", "tmp")).filter((n) => n.startsWith("tree-")),
      ).toEqual([]);
      expect(
        readdirSync(path.join(sshd.root, "hostile", "releases")).filter((n) => n.startsWith(".")),
      ).toEqual([]);
    } finally {
      await connection.close();
    }
  });
});

function smallTree(salt: string): Record<string, MemoryEntry> {
  const tree: Record<string, MemoryEntry> = {
    "a.txt": `alpha ${salt}\n`,
    "lib/b.txt": `bravo ${salt}\n`,
    "lib/deep/c.txt": `charlie ${salt}\n`,
    "ファイル with space.txt": `unicode ${salt}\n`,
    "bin/run": { content: `#!/bin/sh\necho ${salt}\n`, mode: 0o755 },
    private: { dir: 0o700 },
    latest: { link: "bin/run" },
  };
  for (let i = 0; i < 40; i++) tree[`many/f${i}.txt`] = `file ${i} ${salt}\n`;
  return tree;
}
