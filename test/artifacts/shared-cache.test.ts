import { createHash, randomBytes } from "node:crypto";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ArtifactStore } from "../../src/artifacts/artifact-store.js";
import { isTurnoutError } from "../../src/domain/errors.js";
import { raw } from "../engine/retention-fixtures.js";
import { useTestStore } from "../helpers/databases.js";
import { damageBlob, makeTree, tempDir } from "./helpers.js";

/**
 * Two artifact stores (two servers' data directories) over one shared store
 * in the machine's PostgreSQL: what one builds, the other reads through.
 */
const sha = (data: string | Buffer) => createHash("sha256").update(data).digest("hex");

describe("artifact stores sharing PostgreSQL", () => {
  const store = useTestStore("postgres");
  let scratch: { dir: string; cleanup(): Promise<void> };
  let one: ArtifactStore;
  let two: ArtifactStore;
  const files = {
    "app.js": `console.log(${JSON.stringify(randomBytes(6).toString("hex"))});\n`,
    "lib/util.js": "module.exports = 1;\n",
    "bin/run": { content: "#!/bin/sh\nexec node app.js\n", mode: 0o755 },
  };

  beforeEach(async () => {
    scratch = await tempDir("shared-cache");
    await makeTree(path.join(scratch.dir, "tree"), files);
    one = new ArtifactStore({ dir: path.join(scratch.dir, "one"), shared: store().artifactBlobs });
    two = new ArtifactStore({ dir: path.join(scratch.dir, "two"), shared: store().artifactBlobs });
  });
  afterEach(async () => {
    await scratch.cleanup();
  });

  it("a directory stored by one is read by the other: manifest, blobs one by one and back to back", async () => {
    const stored = await one.fromDirectory(path.join(scratch.dir, "tree"));
    expect(await two.manifest(stored.digest)).toEqual(stored.manifest);
    const util = sha("module.exports = 1;\n");
    const { stream, size } = await two.openBlobWithSize(util);
    const chunks: Buffer[] = [];
    for await (const chunk of stream) chunks.push(chunk as Buffer);
    expect(size).toBe(20);
    expect(Buffer.concat(chunks).toString()).toBe("module.exports = 1;\n");
    const digests = stored.manifest.entries.flatMap((e) => (e.type === "file" ? [e.sha256] : []));
    const all = await two.openConcatenated(digests);
    const out: Buffer[] = [];
    await all.writeTo({
      write: (chunk, callback) => {
        out.push(Buffer.from(chunk));
        callback();
      },
    });
    expect(Buffer.concat(out).length).toBe(all.size);
    expect(await two.hasBlob(stored.digest)).toBe(true);
  });

  it("an artifact missing one blob in the shared store is not whole, on either server", async () => {
    const stored = await one.fromDirectory(path.join(scratch.dir, "tree"));
    await raw(store())
      .updateTable("artifact_blobs")
      .set({ touched_at: "2000-01-01T00:00:00.000Z" })
      .where("digest", "=", sha("module.exports = 1;\n"))
      .execute();
    const removed = await store().artifactBlobs.remove(
      [sha("module.exports = 1;\n")],
      new Date().toISOString(),
    );
    expect(removed.map((r) => r.digest)).toEqual([sha("module.exports = 1;\n")]);
    expect(await one.hasBlob(stored.digest)).toBe(false);
    expect(await two.hasBlob(stored.digest)).toBe(false);
    // Building again publishes what the shared store lacks.
    await one.fromDirectory(path.join(scratch.dir, "tree"));
    expect(await two.hasBlob(stored.digest)).toBe(true);
  });

  it("a touched blob outlives a removal that started before the touch", async () => {
    await one.fromDirectory(path.join(scratch.dir, "tree"));
    const digest = sha("module.exports = 1;\n");
    const before = new Date(Date.now() + 60_000).toISOString(); // would remove anything touched until then
    await raw(store())
      .updateTable("artifact_blobs")
      .set({ touched_at: "2000-01-01T00:00:00.000Z" })
      .execute();
    expect(await store().artifactBlobs.touchOrMissing([digest])).toEqual(new Set());
    const removed = await store().artifactBlobs.remove([digest], "2001-01-01T00:00:00.000Z");
    expect(removed).toEqual([]);
    expect((await store().artifactBlobs.remove([digest], before)).map((r) => r.digest)).toEqual([digest]);
    expect(await store().artifactBlobs.touchOrMissing([digest])).toEqual(new Set([digest]));
  });

  it("a damaged local copy is never published: refused, dropped, and written again by the next build", async () => {
    const stored = await one.fromDirectory(path.join(scratch.dir, "tree"));
    const digest = sha("module.exports = 1;\n");
    // The shared store lost it; one's own copy went bad on disk.
    await raw(store()).deleteFrom("artifact_blob_chunks").where("digest", "=", digest).execute();
    await raw(store()).deleteFrom("artifact_blobs").where("digest", "=", digest).execute();
    await damageBlob(path.join(scratch.dir, "one"), digest);
    const error = await one.fromDirectory(path.join(scratch.dir, "tree")).catch((e: unknown) => e);
    expect(isTurnoutError(error) && error.code).toBe("E_INTERNAL");
    expect((await store().artifactBlobs.sizes([digest])).size).toBe(0);
    const again = await one.fromDirectory(path.join(scratch.dir, "tree"));
    expect(again.digest).toBe(stored.digest);
    expect(await two.hasBlob(stored.digest)).toBe(true);
    const { stream } = await two.openBlobWithSize(digest);
    const chunks: Buffer[] = [];
    for await (const chunk of stream) chunks.push(chunk as Buffer);
    expect(Buffer.concat(chunks).toString()).toBe("module.exports = 1;\n");
  });

  it("a blob read through is fetched from the shared store once, then served from the data directory", async () => {
    const stored = await one.fromDirectory(path.join(scratch.dir, "tree"));
    const util = sha("module.exports = 1;\n");
    const read = async () => {
      const blobs = await two.openConcatenated([util]);
      const out: Buffer[] = [];
      await blobs.writeTo({
        write: (chunk, callback) => {
          out.push(Buffer.from(chunk));
          callback();
        },
      });
      return Buffer.concat(out).toString();
    };
    expect(await read()).toBe("module.exports = 1;\n");
    const before = store().queries();
    for (let i = 0; i < 5; i++) expect(await read()).toBe("module.exports = 1;\n");
    // Five hosts downloading the same blob from this server: no statement at all.
    expect(store().queries() - before).toBe(0);
    expect(stored.digest).toBeDefined();
  });

  it("hosts asking for the same blob at once wait for one fetch from the shared store", async () => {
    await one.fromDirectory(path.join(scratch.dir, "tree"));
    const util = sha("module.exports = 1;\n");
    const three = new ArtifactStore({ dir: path.join(scratch.dir, "three"), shared: store().artifactBlobs });
    let before = store().queries();
    await two.openConcatenated([util]);
    const one_fetch = store().queries() - before;
    expect(one_fetch).toBeGreaterThan(0);
    before = store().queries();
    const all = await Promise.all(Array.from({ length: 8 }, () => three.openConcatenated([util])));
    expect(store().queries() - before).toBe(one_fetch);
    expect(all.every((blobs) => blobs.size === 20)).toBe(true);
  });
});
