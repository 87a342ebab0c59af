import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import type { ArtifactManifest } from "../../src/domain/artifact.js";
import { REMOTE_SCRIPT } from "../../src/providers/fleet/ssh/remote-script.js";
import { planForHost } from "../../src/providers/fleet/ssh/ssh-validate.js";
import { stageTar } from "../../src/providers/fleet/ssh/stage-tar.js";
import {
  applyTarPatch,
  MAX_PATCH_RANGES,
  TAR_RECORD,
  tarPatch,
} from "../../src/providers/fleet/ssh/tar-patch.js";
import { type MemoryEntry, memoryRelease } from "../helpers/sshd.js";

/**
 * The stage tar an SSH host keeps, and the patch of it the next release is
 * sent as (issue 15): the server makes the base's tar again from its
 * manifest, so it must come out byte for byte the same every time.
 */
const long = `${"deep/".repeat(30)}name with space and ü.txt`;

function tree(salt: string, files = 300): Record<string, MemoryEntry> {
  const t: Record<string, MemoryEntry> = {
    "bin/run": { content: `#!/bin/sh\necho ${salt}\n`, mode: 0o755 },
    private: { dir: 0o700 },
    latest: { link: "bin/run" },
    // Past the 100 bytes of a ustar name: a PAX record pair.
    [long]: `long ${salt}\n`,
    "far link": { link: `${"deep/".repeat(30)}name with space and ü.txt` },
  };
  for (let i = 0; i < files; i++) t[`d${i % 7}/f${i}.txt`] = `file ${i} ${salt}\n`;
  return t;
}

const planOf = (manifest: ArtifactManifest) => planForHost(manifest, []);

describe("the stage tar", () => {
  it("is byte for byte a function of the manifest: built twice, in another order, or from a stored copy", async () => {
    const made = memoryRelease(tree("one"));
    const a = await stageTar(planOf(made.manifest));
    const b = await stageTar(planOf(made.manifest));
    expect(b.bytes.equals(a.bytes)).toBe(true);
    // The same tree given in reverse order, and the manifest as the artifact store gives it back.
    const reversed = memoryRelease(Object.fromEntries(Object.entries(tree("one")).reverse()));
    const stored = JSON.parse(JSON.stringify(made.manifest)) as ArtifactManifest;
    expect((await stageTar(planOf(reversed.manifest))).digest).toBe(a.digest);
    expect((await stageTar(planOf(stored))).digest).toBe(a.digest);
    expect(a.bytes.length % TAR_RECORD).toBe(0);
    // Another tree, another tar.
    expect((await stageTar(planOf(memoryRelease(tree("two")).manifest))).digest).not.toBe(a.digest);
  });

  it("has not changed its bytes (a host keeps tars by this digest: a new encoder only misses them)", async () => {
    const made = memoryRelease({
      "a.txt": "alpha\n",
      "bin/run": { content: "#!/bin/sh\n", mode: 0o755 },
      private: { dir: 0o700 },
      latest: { link: "bin/run" },
      [long]: "long\n",
    });
    const tar = await stageTar(planOf(made.manifest));
    expect(tar.digest).toBe(GOLDEN);
  });

  it("is read by GNU tar as the planned entries", async () => {
    const made = memoryRelease(tree("gnu", 20));
    const tar = await stageTar(planOf(made.manifest));
    const dir = mkdtempSync(path.join(os.tmpdir(), "stage-tar-"));
    try {
      writeFileSync(path.join(dir, "t.tar"), tar.bytes);
      const names = execFileSync("tar", ["-t", "-f", path.join(dir, "t.tar")], { encoding: "utf8" })
        .split("\n")
        .filter(Boolean);
      expect(names).toContain(`T/${long}`);
      expect(names).toContain("T/far link");
      expect(names).toHaveLength(made.manifest.entries.length);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("the patch of a stage tar", () => {
  it("is three ranges and one new record for a one-file change, and rebuilds the new tar exactly", async () => {
    const t = tree("base", 3000);
    const base = await stageTar(planOf(memoryRelease(t).manifest));
    const next = await stageTar(planOf(memoryRelease({ ...t, "d3/f10.txt": "changed\n" }).manifest));
    const patch = tarPatch(base.bytes, next.bytes)!;
    expect(patch.ranges).toHaveLength(3);
    expect(patch.ranges.map((r) => r.copy === undefined)).toEqual([false, true, false]);
    expect(patch.literal.length).toBe(TAR_RECORD);
    expect(applyTarPatch(base.bytes, patch).equals(next.bytes)).toBe(true);
  });

  it("covers added, removed and renamed entries and a changed long name", async () => {
    const t = tree("base", 500);
    const { "d1/f1.txt": _gone, ...rest } = t;
    const changed = {
      ...rest,
      "new dir/x.txt": "new\n",
      [long]: "long changed\n",
      "far link": { link: "bin/run" },
      private: { dir: 0o750 },
    };
    const base = await stageTar(planOf(memoryRelease(t).manifest));
    const next = await stageTar(planOf(memoryRelease(changed).manifest));
    const patch = tarPatch(base.bytes, next.bytes)!;
    expect(patch.ranges.length).toBeLessThanOrEqual(MAX_PATCH_RANGES);
    expect(applyTarPatch(base.bytes, patch).equals(next.bytes)).toBe(true);
  });

  it("keeps to the range bound by sending short copies as new records, and gives up past half the tar", async () => {
    const t = tree("base", 3000);
    const base = await stageTar(planOf(memoryRelease(t).manifest));
    const changedEvery = async (step: number) => {
      const changed = { ...t };
      for (let i = 0; i < 3000; i += step) changed[`d${i % 7}/f${i}.txt`] = `changed ${i}\n`;
      return (await stageTar(planOf(memoryRelease(changed).manifest))).bytes;
    };
    // 40 changes spread over the tree: about 80 ranges before the shortest copies go as new records.
    const next = await changedEvery(75);
    const patch = tarPatch(base.bytes, next)!;
    expect(patch.ranges.length).toBeLessThanOrEqual(MAX_PATCH_RANGES);
    expect(patch.literal.length).toBeGreaterThan(40 * TAR_RECORD);
    expect(applyTarPatch(base.bytes, patch).equals(next)).toBe(true);
    // Without the bound it would have been more ranges and fewer new records.
    const loose = tarPatch(base.bytes, next, 1000)!;
    expect(loose.ranges.length).toBeGreaterThan(MAX_PATCH_RANGES);
    expect(loose.literal.length).toBe(40 * TAR_RECORD);
    expect(applyTarPatch(base.bytes, loose).equals(next)).toBe(true);
    // 300 scattered changes: most of the tar would go as new records.
    expect(tarPatch(base.bytes, await changedEvery(10))).toBeUndefined();
    // Every file changed: nothing worth copying.
    const rewritten = await stageTar(planOf(memoryRelease(tree("other", 3000)).manifest));
    expect(tarPatch(base.bytes, rewritten.bytes)).toBeUndefined();
  });

  it("is bounded on the host as on the server", () => {
    expect(REMOTE_SCRIPT).toContain(`MAX_PATCH_RANGES=${MAX_PATCH_RANGES}\n`);
    expect(REMOTE_SCRIPT).toContain(`bs=${TAR_RECORD} `);
  });
});

const GOLDEN = "507241c5f4bfbb083493e4f3b859d7c438c64f8b1efdcb41b499d1ae28c33a8d";
