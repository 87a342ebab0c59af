import type { Readable } from "node:stream";

/**
 * The store every server shares (PostgreSQL, capability `sharedArtifacts`):
 * what the artifact store publishes every blob and manifest to before the
 * artifact is recorded, and reads through on a local miss. Blobs are
 * content-addressed there as on disk; `touched_at` is when a blob was last
 * written or relied on, and the collector removes only blobs untouched for
 * the blob grace and named by no reference (see engine/shared-collection.ts).
 * A second backend keeps the same rows and puts the bytes in an S3-compatible
 * bucket (store/artifact-blobs-s3.ts); the rows are what the collector reads.
 */
export interface SharedBlobStore {
  /**
   * Marks every stored one of `digests` as relied on now and returns the
   * ones not stored. Atomic per blob against `remove`: a blob is either
   * touched (and then outlives the grace) or reported missing.
   */
  touchOrMissing(digests: readonly string[]): Promise<Set<string>>;
  /**
   * Stores blobs, each read from `open()` and checked against its digest
   * while read (a local copy gone bad is never published); durable on
   * return. A blob stored meanwhile by another server is skipped.
   */
  put(blobs: readonly SharedBlobInput[]): Promise<void>;
  /** The sizes of the stored ones of `digests`. */
  sizes(digests: readonly string[]): Promise<Map<string, number>>;
  /** Whole blobs, for small ones read together (the caller keeps a batch to a few megabytes). */
  readSmall(digests: readonly string[]): Promise<Map<string, Buffer>>;
  /** One blob's bytes a few chunks at a time, in order. */
  readLarge(digest: string): AsyncIterable<Buffer>;
  /** Every stored blob, for the collector. */
  list(): Promise<SharedBlobInfo[]>;
  /** Removes those of `digests` not touched since `untouchedSince`; returns what went. */
  remove(digests: readonly string[], untouchedSince: string): Promise<{ digest: string; size: number }[]>;
  /**
   * Removes bytes stored without a row (a put whose transaction never
   * committed) and older than `untouchedSince`; only a backend whose bytes
   * live outside the database can have any.
   */
  removeStrays?(untouchedSince: string): Promise<{ digest: string; size: number }[]>;
  /** Checked once at start: E_ARTIFACT_STORE when the backend cannot be used (wrong credentials, no bucket). */
  check?(): Promise<void>;
  /** Releases connections the backend holds of its own (not the database's). */
  close?(): void;
  /** Runs `fn` unless another server's collection is running (then undefined). */
  exclusively<T>(fn: () => Promise<T>): Promise<T | undefined>;
}

export interface SharedBlobInput {
  sha256: string;
  size: number;
  /** Its bytes: a small blob whole (no stream to set up for each of thousands), a large one streamed. */
  open(): Promise<Readable | Buffer>;
}

export interface SharedBlobInfo {
  digest: string;
  size: number;
  touchedAt: string;
}
