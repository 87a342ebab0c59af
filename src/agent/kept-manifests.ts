import { createHash } from "node:crypto";
import {
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import path from "node:path";
import { type ArtifactManifest, canonicalManifest, isSha256 } from "../domain/artifact.js";
import { MAX_KEPT_MANIFESTS } from "./protocol.js";

/**
 * The manifests of the last releases this agent staged, kept under
 * `<root>/.turnout/manifests/<artifact digest>.json` (canonical JSON), so the
 * server can send the next release as a difference from one of them (agent
 * protocol 2). A file is trusted only if it hashes back to its name: one
 * damaged or deleted by hand is as if it were not there, and the agent then
 * reads the whole manifest from the server.
 *
 * The newest MAX_KEPT_MANIFESTS are kept, by modification time (a manifest
 * used as a base is touched).
 */
export class KeptManifests {
  constructor(readonly dir: string) {}

  /** Digests kept, most recent first. */
  list(): string[] {
    let names: string[];
    try {
      names = readdirSync(this.dir);
    } catch {
      return [];
    }
    const found: { digest: string; at: number }[] = [];
    for (const name of names) {
      const digest = name.slice(0, -".json".length);
      if (!name.endsWith(".json") || !isSha256(digest)) continue;
      const stats = statSync(path.join(this.dir, name), { throwIfNoEntry: false });
      if (stats?.isFile()) found.push({ digest, at: stats.mtimeMs });
    }
    found.sort((a, b) => b.at - a.at || (a.digest < b.digest ? -1 : 1));
    return found.slice(0, MAX_KEPT_MANIFESTS).map((f) => f.digest);
  }

  /** The manifest of `digest` if it is kept and whole; undefined otherwise. */
  read(digest: string): ArtifactManifest | undefined {
    if (!isSha256(digest)) return undefined;
    const file = this.file(digest);
    let bytes: Buffer;
    try {
      bytes = readFileSync(file);
    } catch {
      return undefined;
    }
    if (createHash("sha256").update(bytes).digest("hex") !== digest) {
      rmSync(file, { force: true });
      return undefined;
    }
    try {
      const now = new Date();
      utimesSync(file, now, now);
    } catch {
      // only the order of keeping suffers
    }
    return JSON.parse(bytes.toString("utf8")) as ArtifactManifest;
  }

  /**
   * Keeps `manifest` as `digest` when it hashes to it (a manifest that does
   * not is not kept), and drops the oldest beyond the limit. Never throws:
   * keeping is an optimisation, not part of staging.
   */
  keep(digest: string, manifest: ArtifactManifest): boolean {
    try {
      if (!isSha256(digest)) return false;
      const text = canonicalManifest(manifest);
      if (createHash("sha256").update(text).digest("hex") !== digest) return false;
      mkdirSync(this.dir, { recursive: true, mode: 0o700 });
      const temp = path.join(this.dir, `.${digest}.${process.pid}.tmp`);
      writeFileSync(temp, text);
      renameSync(temp, this.file(digest));
      const keep = new Set(this.list());
      for (const name of readdirSync(this.dir)) {
        const other = name.slice(0, -".json".length);
        if (name.endsWith(".json") && isSha256(other) && !keep.has(other)) {
          rmSync(path.join(this.dir, name), { force: true });
        }
      }
      return true;
    } catch {
      return false;
    }
  }

  private file(digest: string): string {
    return path.join(this.dir, `${digest}.json`);
  }
}
