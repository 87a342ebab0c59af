import { createHash } from "node:crypto";
import { lstat, mkdtemp, readdir, readFile, readlink, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LocalHostOps } from "../../src/agent/host-layout/local-host-ops.js";
import { manifestDigest } from "../../src/domain/artifact.js";
import type { HostOps, StageSpec } from "../../src/providers/fleet/host-ops.js";
import { SshHostOps } from "../../src/providers/fleet/ssh/ssh-host-ops.js";
import { type MemoryRelease, memoryRelease, type SshdInstance, startSshd } from "../helpers/sshd.js";

/**
 * An SSH host and an agent's LocalHostOps, driven through the same steps,
 * must end up with the same files: same tree, modes, links, hard-link
 * groups, cache, order file and shared state, and the same answers.
 */
const releases = [0, 1, 2, 3].map((i) =>
  memoryRelease({
    "index.html": `<h1>version ${i}</h1>\n`,
    "bin/start": { content: "#!/bin/sh\nexec server\n", mode: 0o755 },
    "lib/common.js": "export const common = true;\n",
    "lib/link": { link: "common.js" },
    "docs/private": { dir: 0o750 },
    "docs/private/notes.txt": "notes\n",
    "log/ignored.txt": "under a shared path\n",
    "config/app.yml": { content: "default: true\n", mode: 0o640 },
  }),
);

let sshd: SshdInstance;
let ssh: SshHostOps;
let local: LocalHostOps;
let localRoot: string;
const never = new AbortController().signal;

beforeAll(async () => {
  sshd = await startSshd();
  // With the releases' manifests: the SSH host is sent differences from the listings it keeps.
  ssh = new SshHostOps(sshd.config("web-ssh"), {
    manifests: async (digest) => {
      const found = releases.find((r) => manifestDigest(r.manifest) === digest);
      return found ? { app: "shop", manifest: found.manifest } : undefined;
    },
  });
  localRoot = await mkdtemp(path.join(os.tmpdir(), "turnout-parity-"));
  local = new LocalHostOps({ name: "web-local", root: localRoot, fsyncs: false, collectBlobs: false });
});
afterAll(async () => {
  await ssh?.close();
  await sshd?.stop();
  if (localRoot) await rm(localRoot, { recursive: true, force: true });
});

/** Everything under a root that makes the layout: what, which mode, which content, which inode group. */
async function snapshot(root: string): Promise<string[]> {
  const lines: string[] = [];
  const inodes = new Map<number, string>();
  const walk = async (dir: string, rel: string) => {
    for (const name of (await readdir(dir)).sort()) {
      const relPath = rel ? `${rel}/${name}` : name;
      // Bookkeeping of the SSH side alone: its lock file, job records, kept listings, stage tars and script, transfer area and cache check stamp.
      if (
        name === ".lock" ||
        relPath === ".turnout/jobs" ||
        relPath === ".turnout/bin" ||
        relPath === ".turnout/listings" ||
        relPath === ".turnout/stagetars" ||
        relPath === ".turnout/blobs/tmp" ||
        relPath === ".turnout/blobs/.verified"
      )
        continue;
      const full = path.join(dir, name);
      const stat = await lstat(full);
      const mode = (stat.mode & 0o7777).toString(8);
      if (stat.isSymbolicLink()) lines.push(`${relPath} link -> ${await readlink(full)}`);
      else if (stat.isDirectory()) {
        lines.push(`${relPath} dir ${mode}`);
        await walk(full, relPath);
      } else {
        const digest = createHash("sha256")
          .update(await readFile(full))
          .digest("hex")
          .slice(0, 12);
        const group = inodes.get(stat.ino) ?? relPath;
        inodes.set(stat.ino, group);
        lines.push(`${relPath} file ${mode} ${digest} same-inode-as:${group}`);
      }
    }
  };
  await walk(root, "");
  return lines;
}

function spec(release: MemoryRelease, extra: Partial<StageSpec> = {}): StageSpec {
  return {
    app: "shop",
    releaseId: release.id,
    manifest: release.manifest,
    shared: ["log", "config/app.yml"],
    beforeSwitch: ["sh", "-c", "echo built > built.txt; mkdir -p gen && echo x > gen/out; chmod 700 gen"],
    env: { MODE: "parity" },
    timeoutMs: 30_000,
    ...extra,
  };
}

/** How each SSH staging came by its tree (StageResult.manifest): "diff" when from a kept listing. */
const sshManifests: unknown[] = [];

async function both<T>(step: (ops: HostOps) => Promise<T>): Promise<T> {
  const [fromSsh, fromLocal] = await Promise.all([step(ssh), step(local)]);
  // The one field an agent of protocol 2 reports differently: how the tree was sent.
  if (fromSsh && typeof fromSsh === "object" && "blobsFetched" in fromSsh) {
    const { manifest, ...rest } = fromSsh as { manifest?: unknown };
    sshManifests.push(manifest);
    expect(rest).toEqual(fromLocal);
    return fromSsh;
  }
  expect(fromSsh).toEqual(fromLocal);
  return fromSsh;
}

describe("SSH hosts and agents build the same layout", () => {
  it("through staging, switching, slots, promotion and pruning", async () => {
    const first = await both((ops) => ops.stage(spec(releases[0]!), releases[0]!.source, () => {}, never));
    expect(first).toMatchObject({ staged: true });
    expect(await snapshot(sshd.root)).toEqual(await snapshot(localRoot));

    await both((ops) => ops.stage(spec(releases[1]!), releases[1]!.source, () => {}, never));
    await both((ops) => ops.stage(spec(releases[1]!), releases[1]!.source, () => {}, never));
    expect(await both((ops) => ops.switchTo("shop", releases[0]!.id, "current"))).toEqual({ previous: null });
    await both((ops) => ops.switchTo("shop", releases[1]!.id, "current"));
    await both((ops) => ops.switchTo("shop", releases[0]!.id, "blue"));
    expect(await both((ops) => ops.promoteSlot("shop", "blue"))).toEqual({
      previous: releases[1]!.id,
      current: releases[0]!.id,
    });
    for (const r of releases.slice(2)) await both((ops) => ops.stage(spec(r), r.source, () => {}, never));
    expect(await snapshot(sshd.root)).toEqual(await snapshot(localRoot));
    // The first went whole; releases 1 to 3 went as differences from a kept listing (hook
    // output and shared links in the base taken out, then made again), and still match.
    expect(sshManifests).toEqual([undefined, "diff", undefined, "diff", "diff"]);

    expect(await both((ops) => ops.prune("shop", 1))).toEqual({
      removed: [releases[1]!.id, releases[2]!.id],
    });
    const inventory = await both((ops) => ops.inventory());
    expect(inventory).toEqual([
      {
        app: "shop",
        releases: [releases[0]!.id, releases[3]!.id],
        current: releases[0]!.id,
        slots: { blue: releases[0]!.id },
      },
    ]);
    const final = await snapshot(sshd.root);
    expect(final).toEqual(await snapshot(localRoot));
    // The comparison covers what matters: hook output, private modes, cache siblings, shared seeds.
    const r0 = `shop/releases/${releases[0]!.id}`;
    expect(final).toEqual(
      expect.arrayContaining([
        `${r0} dir 755`,
        `${r0}/docs/private dir 750`,
        `${r0}/gen dir 700`,
        `${r0}/log link -> ../../shared/log`,
        `${r0}/config/app.yml link -> ../../../shared/config/app.yml`,
        `${r0}/lib/link link -> common.js`,
        expect.stringMatching(/^\.turnout\/blobs\/[0-9a-f]{2}\/[0-9a-f]{64}\.555 file 555 /),
        expect.stringMatching(
          new RegExp(`^${r0}/bin/start file 555 [0-9a-f]{12} same-inode-as:\\.turnout/blobs/`),
        ),
        expect.stringMatching(/^shop\/shared\/config\/app\.yml file 640 /),
      ]),
    );

    // Commands: same exit codes, same output, same fallback without a release.
    const say = ["sh", "-c", 'echo "$TURNOUT_APP $TURNOUT_RELEASE_ID $(basename "$PWD")"; exit 3'];
    const outputs: Record<string, string[]> = { ssh: [], local: [] };
    const [a, b] = await Promise.all([
      ssh.run("shop", say, {}, 5000, (l) => outputs.ssh!.push(l), never),
      local.run("shop", say, {}, 5000, (l) => outputs.local!.push(l), never),
    ]);
    expect([a, b]).toEqual([3, 3]);
    expect(outputs.ssh).toEqual(outputs.local);
    expect(outputs.ssh).toEqual([`shop ${releases[0]!.id} ${releases[0]!.id}`]);
  });
});
