import { createHash } from "node:crypto";
import { readdir, stat } from "node:fs/promises";
import path from "node:path";
import { Readable } from "node:stream";
import type { Kysely } from "kysely";
import type { ArtifactStore, StoredArtifact } from "../../src/artifacts/artifact-store.js";
import { DEFAULT_RETENTION, type RetentionSettings } from "../../src/domain/retention.js";
import type { Schema } from "../../src/store/schema.js";
import type { Store } from "../../src/store/store.js";
import { packTar } from "../artifacts/helpers.js";
import { newDeploy } from "../store/fixtures.js";

/** Retention for tests: everything is old at once unless a test says otherwise, nothing runs on a timer. */
export function retention(overrides: Partial<RetentionSettings> = {}): RetentionSettings {
  return {
    ...DEFAULT_RETENTION,
    artifactGraceMs: 0,
    blobGraceMs: 0,
    gcIntervalMs: 0,
    gcAfterDeploys: 0,
    ...overrides,
  };
}

export const sha = (data: string | Buffer) => createHash("sha256").update(data).digest("hex");

export function raw(store: Store): Kysely<Schema> {
  return (store as unknown as { database: { db: Kysely<Schema> } }).database.db;
}

/** An artifact of `files` (uploaded as a tar: its new blobs go into one pack), recorded for `app`. */
export async function artifactOf(
  store: Store,
  artifacts: ArtifactStore,
  files: Record<string, string>,
  options: { app?: string; source?: "built" | "uploaded" } = {},
): Promise<StoredArtifact> {
  const items = Object.entries(files).map(([name, content]) => ({ name, content }));
  return artifacts.hold(async () => {
    const stored = await artifacts.fromTar(Readable.from([await packTar(items)]));
    await store.artifacts.record({
      digest: stored.digest,
      app: options.app ?? "shop",
      fingerprint: options.source === "uploaded" ? null : `fp-${stored.digest}`,
      files: stored.files,
      bytes: stored.bytes,
      source: options.source ?? "built",
    });
    return stored;
  });
}

/** A deploy of `digest` that ran and succeeded: its release is the environment's current one (unless a slot). */
export async function released(
  store: Store,
  digest: string,
  options: { app?: string; env?: string; slot?: string; log?: string; environmentConfig?: unknown } = {},
): Promise<{ deployId: number }> {
  const deploy = await store.deploys.create(
    newDeploy({ app: options.app ?? "shop", env: options.env ?? "staging", slot: options.slot ?? null }),
    () => ({ ignoredSafeties: [] }),
  );
  const claimed = await store.deploys.claimNext("test-owner", 60_000);
  if (claimed?.id !== deploy.id) throw new Error("another deploy was queued");
  await store.deploys.recordArtifact(deploy.id, digest);
  if (options.log) await store.logs.append(deploy.id, { seq: 0, offset: 0, text: options.log });
  await store.deploys.finish(deploy.id, "test-owner", {
    status: "succeeded",
    release: {
      fingerprint: `release-${digest}`,
      environmentConfig: options.environmentConfig ?? {},
      artifact: digest,
    },
  });
  return { deployId: deploy.id };
}

/** Every blob an artifact needs, with its manifest: present and whole. */
export async function isComplete(artifacts: ArtifactStore, digest: string): Promise<boolean> {
  let manifest: Awaited<ReturnType<ArtifactStore["manifest"]>>;
  try {
    manifest = await artifacts.manifest(digest);
  } catch {
    return false;
  }
  for (const entry of manifest.entries) {
    if (entry.type !== "file") continue;
    if (!(await artifacts.hasBlob(entry.sha256))) return false;
    const chunks: Buffer[] = [];
    for await (const chunk of await artifacts.openBlob(entry.sha256)) chunks.push(chunk as Buffer);
    if (sha(Buffer.concat(chunks)) !== entry.sha256) return false;
  }
  return true;
}

/** Bytes of every file under a directory (what an operator's `du --apparent-size` would say, without directories). */
export async function bytesUnder(dir: string): Promise<number> {
  let total = 0;
  for (const entry of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) total += await bytesUnder(full);
    else if (entry.isFile()) total += (await stat(full)).size;
  }
  return total;
}

/** Makes every artifact record (but `except`) look recorded long ago. */
export async function backdateArtifacts(store: Store, except: string[] = []): Promise<void> {
  let query = raw(store)
    .updateTable("artifacts")
    .set({ created_at: "2000-01-01T00:00:00.000Z", stored_at: "2000-01-01T00:00:00.000Z" });
  if (except.length > 0) query = query.where("digest", "not in", except);
  await query.execute();
}
