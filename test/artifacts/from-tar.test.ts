import { link } from "node:fs/promises";
import path from "node:path";
import { Readable } from "node:stream";
import { gzipSync } from "node:zlib";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ArtifactStore } from "../../src/artifacts/artifact-store.js";
import { blobFiles, makeTree, packTar, realTar, type TarItem, tempDir, tmpFiles } from "./helpers.js";

let root: string;
let cleanup: () => Promise<void>;
let storeDir: string;
let store: ArtifactStore;

beforeEach(async () => {
  ({ dir: root, cleanup } = await tempDir("tar"));
  storeDir = path.join(root, "store");
  store = new ArtifactStore({ dir: storeDir });
});
afterEach(() => cleanup());

/** Small chunks, as from a socket: nothing may rely on one chunk holding a whole header. */
function chunked(buffer: Buffer, size = 700): Readable {
  return Readable.from(
    (function* () {
      for (let i = 0; i < buffer.length; i += size) yield buffer.subarray(i, i + size);
    })(),
  );
}

describe("ArtifactStore.fromTar", () => {
  it("reads what the real tar wrote, plain and gzipped, to the same digest as the directory", async () => {
    const tree = path.join(root, "tree");
    await makeTree(tree, {
      "index.html": "<h1>hi</h1>\n",
      "bin/start": { content: "#!/bin/sh\nexec node .\n", mode: 0o755 },
      "assets/app.js": "console.log(1)\n",
      "assets/latest": { link: "app.js" },
      empty: { dir: true },
    });
    await link(path.join(tree, "assets/app.js"), path.join(tree, "assets/hardlinked.js"));
    const fromDir = await store.fromDirectory(tree);

    const plain = await store.fromTar(chunked(await realTar(tree, false)));
    const gzipped = await store.fromTar(chunked(await realTar(tree, true)));
    expect(plain.digest).toBe(fromDir.digest);
    expect(gzipped.digest).toBe(fromDir.digest);
    expect(gzipped.manifest).toEqual(fromDir.manifest);
    expect(gzipped.files).toBe(4);
    expect(await tmpFiles(storeDir)).toEqual([]);
  });

  it("adds the directories implied by file paths", async () => {
    const archive = await packTar([
      { name: "a/b/c.txt", content: "c" },
      { name: "top.txt", content: "t" },
    ]);
    const stored = await store.fromTar(Readable.from([archive]));
    expect(stored.manifest.entries.map((e) => [e.path, e.type])).toEqual([
      ["a", "dir"],
      ["a/b", "dir"],
      ["a/b/c.txt", "file"],
      ["top.txt", "file"],
    ]);
  });

  const hostile: [string, TarItem[], string][] = [
    ["an absolute path", [{ name: "/etc/cron.d/evil", content: "x" }], "/etc/cron.d/evil"],
    ["a '..' path", [{ name: "../x", content: "x" }], "../x"],
    ["a '..' in the middle", [{ name: "a/../../x", content: "x" }], "a/../../x"],
    ["a symlink leaving the tree", [{ name: "link", type: "symlink", linkname: "../../etc" }], "link"],
    ["an absolute symlink", [{ name: "link", type: "symlink", linkname: "/etc/passwd" }], "link"],
    [
      "symlinks leaving the tree together",
      [
        { name: "d/up", type: "symlink", linkname: ".." },
        { name: "x", type: "symlink", linkname: "d/up/.." },
      ],
      "x",
    ],
    ["a hard link outside", [{ name: "h", type: "link", linkname: "../../etc/shadow" }], "h"],
    ["a hard link to nothing in the archive", [{ name: "h", type: "link", linkname: "etc/shadow" }], "h"],
    ["a character device", [{ name: "null", type: "character-device" }], "null"],
    ["a fifo", [{ name: "pipe", type: "fifo" }], "pipe"],
    [
      "a duplicate path",
      [
        { name: "dup.txt", content: "one" },
        { name: "dup.txt", content: "two" },
      ],
      "dup.txt",
    ],
    [
      "a file below a symlink",
      [
        { name: "sub", type: "directory" },
        { name: "l", type: "symlink", linkname: "sub" },
        { name: "l/x", content: "written through the link" },
      ],
      "l/x",
    ],
    [
      "a path that is both a file and a directory",
      [
        { name: "a/b", content: "below" },
        { name: "a", content: "file" },
      ],
      "a",
    ],
    // Found by test/property/archive.property.test.ts: taken here, then ENAMETOOLONG on every host.
    [
      "a name longer than 255 bytes",
      [{ name: `d/${"n".repeat(256)}`, content: "x" }],
      `d/${"n".repeat(256)}`,
    ],
    ["a name of 200 two-byte characters", [{ name: "é".repeat(200), content: "x" }], "é".repeat(200)],
    [
      "a path longer than 3072 bytes",
      [{ name: "d/".repeat(1600) + "x", content: "x" }],
      "d/".repeat(1600) + "x",
    ],
    [
      "a symlink target longer than 4095 bytes",
      [{ name: "l", type: "symlink", linkname: `${"a/".repeat(2048)}x` }],
      "l",
    ],
  ];

  for (const [what, items, offending] of hostile) {
    it(`refuses ${what}, naming the entry, and keeps no blob`, async () => {
      // A good file first, so a temp blob exists when the bad entry arrives.
      const archive = await packTar([{ name: "good.txt", content: "good content" }, ...items]);
      for (const input of [archive, gzipSync(archive)]) {
        const error = await store.fromTar(chunked(input)).catch((e: unknown) => e);
        expect(error).toMatchObject({ code: "E_VALIDATION", details: { path: offending } });
      }
      expect(await blobFiles(storeDir)).toEqual([]);
      expect(await tmpFiles(storeDir)).toEqual([]);
    });
  }

  it("refuses more entries than allowed", async () => {
    const archive = await packTar([1, 2, 3, 4].map((n) => ({ name: `f${n}`, content: String(n) })));
    await expect(store.fromTar(Readable.from([archive]), { maxEntries: 3 })).rejects.toMatchObject({
      code: "E_VALIDATION",
    });
    expect(await blobFiles(storeDir)).toEqual([]);
    expect(await tmpFiles(storeDir)).toEqual([]);
  });

  it("stops reading past maxBytes of tar, gzip bombs included", async () => {
    const archive = await packTar([{ name: "zeros", content: "\0".repeat(1024 * 1024) }]);
    const bomb = gzipSync(archive);
    expect(bomb.length).toBeLessThan(64 * 1024);
    await expect(store.fromTar(chunked(bomb), { maxBytes: 256 * 1024 })).rejects.toMatchObject({
      code: "E_PAYLOAD_TOO_LARGE",
    });
    expect(await blobFiles(storeDir)).toEqual([]);
    expect(await tmpFiles(storeDir)).toEqual([]);
  });

  it("refuses what is not a tar archive, an empty archive and a truncated one", async () => {
    await expect(
      store.fromTar(Readable.from([Buffer.from("hello, not a tar".repeat(100))])),
    ).rejects.toMatchObject({
      code: "E_VALIDATION",
    });
    await expect(store.fromTar(Readable.from([Buffer.alloc(0)]))).rejects.toMatchObject({
      code: "E_VALIDATION",
    });
    await expect(store.fromTar(Readable.from([await packTar([])]))).rejects.toMatchObject({
      code: "E_VALIDATION",
    });
    const whole = await packTar([{ name: "big", content: "x".repeat(10_000) }]);
    await expect(store.fromTar(Readable.from([whole.subarray(0, 3000)]))).rejects.toMatchObject({
      code: "E_VALIDATION",
    });
    await expect(store.fromTar(Readable.from([gzipSync(whole).subarray(0, 40)]))).rejects.toMatchObject({
      code: "E_VALIDATION",
    });
    expect(await blobFiles(storeDir)).toEqual([]);
    expect(await tmpFiles(storeDir)).toEqual([]);
  });

  it("keeps blobs that an earlier artifact stored when a later archive is refused", async () => {
    const good = await store.fromTar(
      Readable.from([await packTar([{ name: "shared.txt", content: "shared" }])]),
    );
    const before = await blobFiles(storeDir);
    const bad = await packTar([
      { name: "shared.txt", content: "shared" },
      { name: "../escape", content: "x" },
    ]);
    await expect(store.fromTar(Readable.from([bad]))).rejects.toMatchObject({ code: "E_VALIDATION" });
    expect(await blobFiles(storeDir)).toEqual(before);
    expect(await store.manifest(good.digest)).toEqual(good.manifest);
  });
});
