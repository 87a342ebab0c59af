import { createHash } from "node:crypto";
import path from "node:path";
import type { Readable } from "node:stream";
import {
  type ArtifactManifest,
  assertManifest,
  canonicalManifest,
  isSha256,
  manifestDigest,
} from "../domain/artifact.js";
import { isTurnoutError, notFound } from "../domain/errors.js";
import type { GitTreeReader } from "../git/tree-reader.js";
import { ArtifactCollector } from "./artifact-collector.js";
import { BlobDigestMemo } from "./blob-digest-memo.js";
import { BlobDir, type ConcatenatedBlobs } from "./blob-dir.js";
import { readDirectory } from "./directory-source.js";
import { compileExcludes } from "./exclude.js";
import { type BlobAnnounce, readGitTree, readGitTreeChanges } from "./git-tree-source.js";
import type { SharedBlobStore } from "./shared-blobs.js";
import { SharedCache } from "./shared-cache.js";
import { StoreGate } from "./store-gate.js";
import { readTar } from "./tar-source.js";
import { summarize, TreeBuilder } from "./tree-builder.js";
import type { Durability } from "./write-batch.js";

export interface StoredArtifact {
  digest: string;
  manifest: ArtifactManifest;
  files: number;
  bytes: number;
}

export interface ArtifactStoreOptions {
  /** `<dataDir>/artifacts`. */
  dir: string;
  /** Flush blobs and directories to disk before trusting them (default true; off only for throwaway stores). */
  durable?: boolean;
  /** How data and names are flushed (default: syncfs / fsync; tests count the calls). */
  durability?: Durability;
  /**
   * The store every server shares (PostgreSQL): the data directory is then
   * its cache, published to before an artifact is recorded and read through
   * on a miss (see shared-cache.ts). Without it, the data directory is the store.
   */
  shared?: SharedBlobStore;
}

export interface FromTarOptions {
  /** Bytes of the uncompressed tar stream (default 1 GiB). */
  maxBytes?: number;
  /** Entries of the archive (default 200,000). */
  maxEntries?: number;
}

export const DEFAULT_MAX_TAR_BYTES = 1024 * 1024 * 1024;
export const DEFAULT_MAX_TAR_ENTRIES = 200_000;

/**
 * Content-addressed artifacts: every file's content is a blob named by its
 * sha256, stored once however many artifacts hold it, and the manifest is a
 * blob too, named by its digest (sha256 of its canonical JSON), which is the
 * artifact's identity. So equal trees get equal digests, a rebuild of an
 * unchanged tree writes nothing new, and hosts fetch only blobs they lack.
 * Blobs are written before the manifest that names them, and the manifest
 * before the caller records the artifact, so whatever a record or manifest
 * names exists on disk.
 *
 * Unreferenced artifacts are removed by the garbage collector (collect).
 * Whoever relies on blobs already stored until a database row says so —
 * writing an artifact and recording it, choosing an artifact for a deploy
 * and recording that — does it inside `hold`; see store-gate.ts.
 */
export class ArtifactStore {
  private readonly blobs: BlobDir;
  private readonly memo: BlobDigestMemo;
  private readonly gate = new StoreGate();
  /** Set with a shared store: the data directory is its cache. */
  readonly cache: SharedCache | undefined;
  /** The last tree built per repository and subdirectory: the next release is usually a small diff from it. */
  private readonly lastTree = new Map<string, { commit: string; manifest: ArtifactManifest }>();
  /** Lists and marks outside the exclusive section too (it removes nothing there). */
  readonly collector: ArtifactCollector;

  constructor(options: ArtifactStoreOptions) {
    const durable = options.durable !== false;
    this.blobs = new BlobDir(options.dir, durable, options.durability);
    this.memo = new BlobDigestMemo(path.join(options.dir, "git-blob-digests"), durable);
    // A tree built from blobs since removed must not be the base of the next diff.
    this.collector = new ArtifactCollector(this.blobs, this.memo, () => this.lastTree.clear());
    this.cache = options.shared
      ? new SharedCache(this.blobs, options.shared, (digest) => this.collector.blobsOfManifest(digest))
      : undefined;
  }

  /**
   * Runs `fn` where the collector cannot remove anything: for callers that
   * make or pick an artifact and then record the reference in the database.
   * Calls nest; the store's own writes hold it too.
   */
  hold<T>(fn: () => Promise<T>): Promise<T> {
    return this.gate.runShared(fn);
  }

  /** Whether a collection waits for `hold` sections to end. */
  get collectionWaiting(): boolean {
    return this.gate.collectorWaiting;
  }

  /**
   * Runs `fn` with the store's collector alone: no `hold` runs meanwhile.
   * The caller reads the references again inside, then sweeps.
   */
  collect<T>(fn: (collector: ArtifactCollector) => Promise<T>): Promise<T> {
    return this.gate.runExclusive(() => fn(this.collector));
  }

  /**
   * The artifact of a commit's tree (or of `subdir` in it), read from git
   * without a checkout; the same manifest a checkout's fromDirectory would
   * give. Blobs git ids already known are not read again, and after the
   * first tree of a repository, a release that only changed files' content
   * is a diff from the last one (readGitTreeChanges). Null, having
   * stored nothing, when the tree needs a real checkout (submodules,
   * .gitattributes): see git-tree-source.ts.
   */
  fromGitTree(
    reader: GitTreeReader,
    subdir: string | null,
    options: { onBlobs?: BlobAnnounce } = {},
  ): Promise<StoredArtifact | null> {
    return this.hold(() => this.readGitTree(reader, subdir, options.onBlobs));
  }

  private async readGitTree(
    reader: GitTreeReader,
    subdir: string | null,
    announce: BlobAnnounce | undefined,
  ): Promise<StoredArtifact | null> {
    await this.blobs.ensureReady();
    const key = `${reader.repository}\0${subdir ?? ""}`;
    const previous = this.lastTree.get(key);
    const changed = previous
      ? await readGitTreeChanges(reader, subdir, previous, this.blobs, this.memo, announce)
      : null;
    let stored: StoredArtifact;
    if (changed) {
      stored = await this.finish(changed);
    } else {
      const builder = new TreeBuilder();
      if (!(await readGitTree(reader, subdir, builder, this.blobs, this.memo, announce))) return null;
      stored = await this.finish(builder.finish());
    }
    this.lastTree.set(key, { commit: reader.commit, manifest: stored.manifest });
    return stored;
  }

  /**
   * The artifact of a directory: everything but a top-level `.git` and what
   * `exclude` names (see exclude.ts). Symlinks are kept as links and must
   * stay inside the tree; fifos, sockets and devices are refused (E_VALIDATION
   * naming the path); of file modes only the executable bit is kept.
   */
  fromDirectory(
    dir: string,
    options: { exclude?: string[]; onBlobs?: BlobAnnounce } = {},
  ): Promise<StoredArtifact> {
    return this.hold(async () => {
      await this.blobs.ensureReady();
      const builder = new TreeBuilder();
      const out = { pack: this.blobs.beginPack(), batch: this.blobs.batch() };
      try {
        await readDirectory(dir, compileExcludes(options.exclude), builder, this.blobs, out, options.onBlobs);
      } catch (error) {
        out.pack.abort();
        await out.batch.discard();
        throw error;
      }
      await out.pack.commit();
      await out.batch.commit();
      return this.finish(builder.finish());
    });
  }

  /**
   * The artifact of a tar stream (gzip recognized by its magic number), read
   * as it arrives and never extracted. Absolute paths, `..`, links leaving
   * the tree, hard links to anything but a file of the archive, devices,
   * fifos, duplicates and entries below a file or link are refused with
   * E_VALIDATION (details.path names the entry), more than maxBytes with
   * E_PAYLOAD_TOO_LARGE; a refused archive leaves no blob behind.
   */
  fromTar(stream: Readable, options: FromTarOptions = {}): Promise<StoredArtifact> {
    return this.hold(async () => {
      await this.blobs.ensureReady();
      const builder = new TreeBuilder();
      const limits = {
        maxBytes: options.maxBytes ?? DEFAULT_MAX_TAR_BYTES,
        maxEntries: options.maxEntries ?? DEFAULT_MAX_TAR_ENTRIES,
      };
      const pack = this.blobs.beginPack();
      await readTar(stream, limits, builder, this.blobs, pack);
      let manifest: ArtifactManifest;
      try {
        manifest = builder.finish();
      } catch (error) {
        pack.abort();
        throw error;
      }
      await pack.commit();
      return this.finish(manifest);
    });
  }

  /** Stores the manifest of a tree whose blobs are stored and durable already. */
  private async finish(manifest: ArtifactManifest): Promise<StoredArtifact> {
    const canonical = Buffer.from(canonicalManifest(manifest));
    // manifestDigest(manifest), without serialising thousands of entries a second time.
    const digest = createHash("sha256").update(canonical).digest("hex");
    if (!this.blobs.holds(digest)) {
      const batch = this.blobs.batch();
      batch.add(await this.blobs.writeTemp(canonical));
      await batch.commit();
    }
    if (this.cache) await this.cache.publish(digest, fileDigests(manifest));
    return { digest, manifest, ...summarize(manifest) };
  }

  /** The manifest of a stored artifact; E_NOT_FOUND unless `digest` names one. */
  async manifest(digest: string): Promise<ArtifactManifest> {
    if (!isSha256(digest)) throw notFound(`artifact ${digest}`, { digest });
    await this.cache?.ensure([digest]).catch((error: unknown) => {
      if (isTurnoutError(error) && error.code === "E_NOT_FOUND")
        throw notFound(`artifact ${digest}`, { digest });
      throw error;
    });
    const bytes = await this.blobs.read(digest);
    if (!bytes) throw notFound(`artifact ${digest}`, { digest });
    const text = bytes.toString("utf8");
    // Any blob has a digest; only a manifest's parses, validates and hashes back to it.
    try {
      const manifest = assertManifest(JSON.parse(text) as ArtifactManifest);
      if (manifestDigest(manifest) === digest) return manifest;
    } catch {
      // not a manifest
    }
    throw notFound(`artifact ${digest}`, { digest });
  }

  /**
   * With a shared store, whether it holds the blob, or the whole artifact
   * when `sha256` is a manifest, touched so that no server's collector
   * removes it for the blob grace: callers check this and then record that
   * they use it (inside `hold`).
   */
  hasBlob(sha256: string): Promise<boolean> {
    if (!isSha256(sha256)) return Promise.resolve(false);
    if (this.cache) return this.cache.holdsWhole(sha256);
    return this.blobs.has(sha256);
  }

  /** E_NOT_FOUND when absent, E_VALIDATION when `sha256` is not a digest. */
  async openBlob(sha256: string): Promise<Readable> {
    return (await this.openBlobWithSize(sha256)).stream;
  }

  /** The blob and its size (for Content-Length), opened before returning. */
  async openBlobWithSize(sha256: string): Promise<{ stream: Readable; size: number }> {
    this.blobs.blobPath(sha256);
    await this.cache?.ensure([sha256]);
    return this.blobs.open(sha256);
  }

  /** The blobs back to back (see BlobDir.concatenated); E_NOT_FOUND before any byte when one is missing. */
  concatenated(digests: readonly string[]): ConcatenatedBlobs {
    return this.blobs.concatenated(digests);
  }

  /** concatenated(), after fetching what this cache lacks from the shared store (if any). */
  async openConcatenated(digests: readonly string[]): Promise<ConcatenatedBlobs> {
    for (const digest of digests) this.blobs.blobPath(digest);
    await this.cache?.ensure(digests);
    return this.blobs.concatenated(digests);
  }

  blobPath(sha256: string): string {
    return this.blobs.blobPath(sha256);
  }
}

function fileDigests(manifest: ArtifactManifest): string[] {
  const digests: string[] = [];
  for (const entry of manifest.entries) if (entry.type === "file") digests.push(entry.sha256);
  return digests;
}
