import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import {
  chmodSync,
  existsSync,
  mkdirSync,
  readFileSync,
  rmSync,
  statSync,
  truncateSync,
  writeFileSync,
} from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { StageSpec } from "../../src/providers/fleet/host-ops.js";
import { SshHostOps } from "../../src/providers/fleet/ssh/ssh-host-ops.js";
import { type MemoryRelease, memoryRelease, type SshdInstance, startSshd } from "../helpers/sshd.js";

/**
 * An SSH host's cache repairs itself (issue 15, points 1 and 4): parts of
 * the root are deleted or damaged by hand between stagings (a blob, a shard
 * directory, the whole cache, a truncated blob, a blob with other bytes of
 * the same size, a file of the live release, the live release itself). The
 * next staging fetches what is gone and stages a damaged release again;
 * nothing fails for good, and the host ends with exactly the release's bytes.
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

const digest = (text: string) => createHash("sha256").update(text).digest("hex");
const cacheDir = () => path.join(sshd.root, ".turnout", "blobs");
const cached = (text: string) => path.join(cacheDir(), digest(text).slice(0, 2), digest(text));
let app = "shop";
const live = (file: string) => path.join(sshd.root, app, "current", file);

/** Every test its own app and its own bytes: what one test damages is not another's. */
function releases(salt: string) {
  const files = {
    "a.txt": `alpha ${salt}\n`,
    "lib/b.txt": `bravo ${salt}\n`,
    "lib/c.txt": `charlie charlie ${salt}\n`,
    "bin/run": { content: `#!/bin/sh\necho run ${salt}\n`, mode: 0o755 },
  };
  return [
    memoryRelease(files),
    memoryRelease({ ...files, "d.txt": `delta ${salt}\n` }),
    memoryRelease({ ...files, "e.txt": `echo ${salt}\n` }),
    memoryRelease({ ...files, "f.txt": `foxtrot ${salt}\n` }),
  ] as const;
}

async function stage(release: MemoryRelease, lines: string[] = []) {
  const spec: StageSpec = {
    app,
    releaseId: release.id,
    manifest: release.manifest,
    shared: [],
    env: {},
    timeoutMs: 30_000,
  };
  const result = await host.stage(spec, release.source, (line) => lines.push(line), never);
  await host.switchTo(app, release.id, "current");
  return result;
}

function expectServes(release: MemoryRelease) {
  for (const entry of release.manifest.entries) {
    if (entry.type !== "file") continue;
    const bytes = readFileSync(live(entry.path));
    expect(createHash("sha256").update(bytes).digest("hex"), entry.path).toBe(entry.sha256);
  }
}

describe("SSH host cache repair", () => {
  it("fetches a deleted blob, shard directory or whole cache again", async () => {
    app = "one";
    const [v1, v2, v3, v4] = releases("one");
    expect((await stage(v1)).staged).toBe(true);

    rmSync(cached("bravo one\n"));
    const second = await stage(v2);
    // The deleted blob and the new one: nothing else.
    expect(second).toMatchObject({ staged: true, blobsFetched: 2 });
    expect(existsSync(cached("bravo one\n"))).toBe(true);
    expectServes(v2);

    rmSync(path.dirname(cached("charlie charlie one\n")), { recursive: true });
    expect(await stage(v3)).toMatchObject({ staged: true, blobsFetched: 2 });
    expect(existsSync(cached("charlie charlie one\n"))).toBe(true);
    expectServes(v3);

    rmSync(cacheDir(), { recursive: true });
    expect(await stage(v4)).toMatchObject({ staged: true, blobsFetched: 5 });
    expectServes(v4);
  });

  it("finds a truncated blob and a blob with other bytes, and stages the release that shares them again", async () => {
    app = "two";
    const [v1] = releases("two");
    await stage(v1);
    // Truncated: the cache name and the live file are one inode.
    chmodSync(cached("alpha two\n"), 0o644);
    truncateSync(cached("alpha two\n"), 2);
    const lines: string[] = [];
    const truncated = await stage(v1, lines);
    expect(truncated).toMatchObject({ staged: true, repaired: true });
    expect(lines.join("\n")).toMatch(/release [0-9a-f]{16} is damaged on this host \(f 444 10 a\.txt/);
    expectServes(v1);

    // Same size, other bytes: only hashing finds it.
    chmodSync(cached("bravo two\n"), 0o644);
    writeFileSync(cached("bravo two\n"), "BRAVO TWO\n");
    lines.length = 0;
    const changed = await stage(v1, lines);
    expect(changed).toMatchObject({ staged: true, repaired: true, blobsFetched: 1 });
    expect(lines.join("\n")).toContain("blob cache: 1 damaged blobs removed");
    expect(lines.join("\n")).toContain("lib/b.txt: bytes do not match the digest");
    expectServes(v1);
    expect(readFileSync(cached("bravo two\n"), "utf8")).toBe("bravo two\n");

    // Whole again: the next staging of it does nothing.
    expect(await stage(v1)).toEqual({ staged: false, blobsFetched: 0, bytesFetched: 0 });
  });

  it("stages a release again when a file of it or the whole release was deleted", async () => {
    app = "three";
    const [, v2] = releases("three");
    await stage(v2);
    rmSync(live("lib/c.txt"));
    rmSync(live("bin/run"));
    const lines: string[] = [];
    const result = await stage(v2, lines);
    expect(result).toMatchObject({ staged: true, repaired: true, blobsFetched: 0 });
    expect(lines.join("\n")).toContain("lib/c.txt");
    expectServes(v2);

    // The release directory itself: the inventory shows no current (drift), staging brings it back.
    rmSync(path.join(sshd.root, app, "releases", v2.id), { recursive: true, force: true });
    const inventory = await host.inventory();
    expect(inventory.find((a) => a.app === app)?.current).toBeNull();
    expect(await stage(v2)).toMatchObject({ staged: true });
    expectServes(v2);
    expect((await host.inventory()).find((a) => a.app === app)?.current).toBe(v2.id);
  });
});

describe("SSH staging where the cache cannot be hard-linked", () => {
  it("copies the files when the app directory is on another file system than the cache", async () => {
    app = "copied";
    const dir = path.join(sshd.root, app);
    mkdirSync(dir);
    // A file system of its own for the app directory (the tests run as root, as in CI).
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=16m", "turnout-test", dir]);
    try {
      const [v1, v2] = releases("copied");
      const lines: string[] = [];
      expect(await stage(v1, lines)).toMatchObject({ staged: true, blobsFetched: 4 });
      expect(lines.join("\n")).toContain("files are copied");
      expectServes(v1);
      const file = statSync(live("lib/b.txt"));
      expect(file.nlink).toBe(1);
      expect(file.mode & 0o7777).toBe(0o444);
      expect(statSync(live("bin/run")).mode & 0o7777).toBe(0o555);
      // The cache still got the blobs, and a later release reuses them.
      expect(statSync(cached("bravo copied\n")).nlink).toBe(1);
      expect(await stage(v2)).toMatchObject({ staged: true, blobsFetched: 1 });
      expectServes(v2);
      // Whole copies count as whole: nothing to repair.
      expect(await stage(v2)).toEqual({ staged: false, blobsFetched: 0, bytesFetched: 0 });
    } finally {
      execFileSync("umount", ["-l", dir]);
    }
  });
});
