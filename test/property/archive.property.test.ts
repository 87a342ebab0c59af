import { createHash } from "node:crypto";
import { lstatSync, mkdirSync, readdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { Readable } from "node:stream";
import { gzipSync } from "node:zlib";
import fc from "fast-check";
import { pack } from "tar-stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { assertHostConsistent, LocalHostOps } from "../../src/agent/host-layout/index.js";
import { assertManifest, hostReleaseId } from "../../src/domain/artifact.js";
import { startTurnout, type TestTurnout } from "../helpers/turnout.js";
import { hostileString, longString, markers, PATH_TRICKS } from "./hostile-input.js";
import { expectNoServerError } from "./http-assertions.js";
import { runs } from "./property-runs.js";

/**
 * Artifact uploads (`POST /api/v1/apps/:app/artifacts`) of generated tar
 * archives: random entry names (traversal, absolute paths into a canary
 * directory beside the data directory, long names, unicode), every entry type
 * (files, directories, symlinks, hard links, devices, fifos), link targets
 * inside and outside the tree, modes with setuid bits, sizes around the
 * store's in-memory limit, gzipped or cut short. The answer is 201 or a
 * refusal in Turnout's format, never a 5xx; nothing is written outside the
 * artifact store (the server's root and the canary stay as they were, the
 * store holds only plain files and directories); and what is accepted is a
 * valid manifest whose blobs read back with the digests it names, and which
 * a host (the agents' own host layout, on a directory beside the canary)
 * stages: an upload the server takes is one every host can install.
 */
let t: TestTurnout;
let root: string;
let canary: string;
let markerDir: string;
let hostRoot: string;
let host: LocalHostOps;

beforeAll(async () => {
  t = await startTurnout();
  root = path.dirname(t.dataDir);
  canary = path.join(root, "canary");
  markerDir = path.join(root, "markers");
  mkdirSync(canary);
  mkdirSync(markerDir);
  writeFileSync(path.join(canary, "keep"), "canary\n");
  hostRoot = path.join(root, "host");
  host = new LocalHostOps({ name: "h1", root: hostRoot, fsyncs: false, killGraceMs: 500 });
}, 120_000);

afterAll(async () => {
  await t?.stop();
});

type EntryType =
  | "file"
  | "directory"
  | "symlink"
  | "link"
  | "character-device"
  | "block-device"
  | "fifo"
  | "contiguous-file";

interface Entry {
  name: string;
  type: EntryType;
  linkname: string;
  size: number;
  mode: number;
}

/** Every path under `dir` (relative), with what it is; the artifact store and the database are left out. */
function tree(dir: string, skip: (relative: string) => boolean): string[] {
  const out: string[] = [];
  const walk = (current: string) => {
    for (const name of readdirSync(current)) {
      const full = path.join(current, name);
      const relative = path.relative(dir, full);
      if (skip(relative)) continue;
      const info = lstatSync(full);
      out.push(`${relative} ${info.isSymbolicLink() ? "link" : info.isDirectory() ? "dir" : "file"}`);
      if (info.isDirectory()) walk(full);
    }
  };
  walk(dir);
  return out.sort();
}

/** What may change while uploads are served and staged: the store, the database, the host's own root. */
const serverOwned = (relative: string) =>
  relative === path.join("data", "artifacts") ||
  relative === "host" ||
  /^data\/(turnout\.db|.*\.db-(wal|shm)|.*\.lock)/.test(relative);

/** Every file of the artifact store is a plain file or directory: no link, device or setuid file planted there. */
function expectPlainStore(dir: string): void {
  const walk = (current: string) => {
    for (const name of readdirSync(current)) {
      const full = path.join(current, name);
      const info = lstatSync(full);
      expect(info.isFile() || info.isDirectory(), full).toBe(true);
      expect(info.mode & 0o6000, full).toBe(0);
      if (info.isDirectory()) walk(full);
    }
  };
  walk(dir);
}

function archive(entries: Entry[]): Promise<Buffer> {
  const out = pack();
  const chunks: Buffer[] = [];
  const collected = (async () => {
    for await (const chunk of out) chunks.push(chunk as Buffer);
  })();
  for (const [i, entry] of entries.entries()) {
    const header = {
      name: entry.name,
      type: entry.type,
      mode: entry.mode,
      ...(entry.type === "symlink" || entry.type === "link" ? { linkname: entry.linkname } : {}),
      ...(entry.type.endsWith("-device") ? { devmajor: 1, devminor: 3 } : {}),
    };
    if (entry.type === "file" || entry.type === "contiguous-file") {
      // Content from the entry's index, so that some entries share content and some do not.
      out.entry({ ...header, size: entry.size }, Buffer.alloc(entry.size, i % 3));
    } else {
      out.entry(header);
    }
  }
  out.finalize();
  return collected.then(() => Buffer.concat(chunks));
}

describe("archive uploads (property)", () => {
  it("any archive: 201 or a refusal, never a 5xx, nothing outside the store, accepted ones whole", async () => {
    const hostile = hostileString(markerDir);
    const escapes = fc.constantFrom(
      "../canary/pwned",
      "../../canary/pwned",
      "../../../canary/pwned",
      "a/../../canary/pwned",
      path.join(canary, "pwned"),
      `/${path.relative("/", canary)}/x`,
    );
    const name = fc.oneof(
      {
        weight: 6,
        arbitrary: fc.constantFrom("a.txt", "dir/b.txt", "./c", "bin/run", "dir", "dir/", "d/e/f", "x"),
      },
      { weight: 2, arbitrary: escapes },
      { weight: 2, arbitrary: fc.constantFrom(...PATH_TRICKS) },
      { weight: 1, arbitrary: hostile },
      { weight: 1, arbitrary: longString },
      // Names a host's filesystem cannot hold: a component over 255 bytes, a path over 4 KiB.
      {
        weight: 1,
        arbitrary: fc.constantFrom(
          "n".repeat(256),
          `d/${"n".repeat(300)}`,
          "é".repeat(200),
          "d/".repeat(2100),
        ),
      },
    );
    const entry: fc.Arbitrary<Entry> = fc.record({
      name,
      type: fc.oneof(
        { weight: 5, arbitrary: fc.constant<EntryType>("file") },
        { weight: 2, arbitrary: fc.constant<EntryType>("directory") },
        { weight: 3, arbitrary: fc.constant<EntryType>("symlink") },
        { weight: 2, arbitrary: fc.constant<EntryType>("link") },
        {
          weight: 1,
          arbitrary: fc.constantFrom<EntryType>(
            "character-device",
            "block-device",
            "fifo",
            "contiguous-file",
          ),
        },
      ),
      linkname: fc.oneof(
        fc.constantFrom("a.txt", "dir/b.txt", "../a.txt", "b.txt", ".", "..", "dir", "bin/run", ""),
        escapes,
        fc.constantFrom("/", "/etc/passwd", canary),
        hostile,
        // Inside the tree, but longer than a symlink can hold.
        fc.constantFrom(`${"a/".repeat(2100)}a.txt`, "x".repeat(4096)),
      ),
      size: fc.oneof(
        { weight: 8, arbitrary: fc.integer({ min: 0, max: 4096 }) },
        { weight: 1, arbitrary: fc.constant(1024 * 1024 + 1) },
      ),
      mode: fc.constantFrom(0o644, 0o755, 0o4755, 0o2755, 0o7777, 0o000, 0o777),
    });
    // Mostly archives a CI job would send (distinct names, links inside the tree), with hostile
    // entries mixed in: so that both sides are reached, the stored and the refused.
    const plain: fc.Arbitrary<Entry> = fc.record({
      name: fc.constantFrom(
        "a.txt",
        "dir/b.txt",
        "c",
        "bin/run",
        "dir",
        "d/e/f",
        "lib/x.so",
        "é/ü.txt",
        "./g",
      ),
      type: fc.constantFrom<EntryType>("file", "file", "file", "directory", "symlink", "link"),
      linkname: fc.constantFrom("a.txt", "dir/b.txt", "c", "../c", "bin"),
      size: fc.integer({ min: 0, max: 2048 }),
      mode: fc.constantFrom(0o644, 0o755, 0o4755),
    });
    const entries = fc
      .tuple(
        fc.uniqueArray(plain, { maxLength: 5, selector: (e) => e.name.replace(/^\.\//, "") }),
        fc.oneof(
          { weight: 2, arbitrary: fc.constant([] as Entry[]) },
          { weight: 3, arbitrary: fc.array(entry, { minLength: 1, maxLength: 2 }) },
        ),
        fc.nat(),
      )
      .map(([good, bad, at]) => {
        const all = [...good];
        for (const e of bad) all.splice(at % (all.length + 1), 0, e);
        return all;
      });
    const upload = fc.record({
      entries,
      gzip: fc.boolean(),
      // Cut the archive short (a sender that stops half way), or send it whole.
      cut: fc.oneof(
        { weight: 8, arbitrary: fc.constant(1) },
        { weight: 1, arbitrary: fc.double({ min: 0, max: 1 }) },
      ),
      contentType: fc.constantFrom("application/x-tar", "application/gzip", "application/octet-stream"),
    });
    const before = tree(root, serverOwned);
    let stored = 0;
    await fc.assert(
      fc.asyncProperty(upload, async ({ entries, gzip, cut, contentType }) => {
        const tar = await archive(entries);
        const whole = gzip ? gzipSync(tar) : tar;
        const body = whole.subarray(0, Math.floor(whole.length * cut));
        const response = await fetch(`${t.url}/api/v1/apps/shop/artifacts`, {
          method: "POST",
          headers: { authorization: `Bearer ${t.adminToken}`, "content-type": contentType },
          body,
        });
        const answer = (await response.json()) as any;
        const what = `upload of ${JSON.stringify(entries.map((e) => [e.type, e.name, e.linkname]))}`;
        expectNoServerError(response.status, answer, what);
        expect([201, 400, 413, 422], what).toContain(response.status);
        expect(tree(root, serverOwned), what).toEqual(before);
        expect(markers(markerDir)).toEqual([]);
        if (response.status !== 201) return;
        stored += 1;
        const digest = answer.artifact.digest as string;
        const manifest: any = await (
          await fetch(`${t.url}/api/v1/artifacts/${digest}/manifest`, {
            headers: { authorization: `Bearer ${t.adminToken}` },
          })
        ).json();
        expect(() => assertManifest(manifest), what).not.toThrow();
        const blobs = new Map<string, Buffer>();
        for (const file of manifest.entries.filter((e: { type: string }) => e.type === "file")) {
          const blob = await fetch(`${t.url}/api/v1/blobs/${file.sha256}?artifact=${digest}`, {
            headers: { authorization: `Bearer ${t.adminToken}` },
          });
          const bytes = Buffer.from(await blob.arrayBuffer());
          expect(blob.status, what).toBe(200);
          expect(bytes.length).toBe(file.size);
          expect(createHash("sha256").update(bytes).digest("hex")).toBe(file.sha256);
          blobs.set(file.sha256, bytes);
        }
        // What the server took, a host can install: staged by the agents' host layout, nothing outside it.
        const staged = host.stage(
          { app: "shop", releaseId: hostReleaseId(digest), manifest, shared: [], env: {}, timeoutMs: 60_000 },
          { open: async (sha256) => Readable.from([blobs.get(sha256)!]) },
          () => {},
          new AbortController().signal,
        );
        await expect(staged, what).resolves.toMatchObject({});
        await assertHostConsistent(hostRoot);
        expect(tree(root, serverOwned), what).toEqual(before);
      }),
      runs(40),
    );
    expectPlainStore(path.join(t.dataDir, "artifacts"));
    expect(readdirSync(canary)).toEqual(["keep"]);
    // The generator must reach the accepting side too, or "accepted ones whole" proves nothing.
    expect(stored).toBeGreaterThan(2);
  });
});
