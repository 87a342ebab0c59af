import type { ConfigProblem, ConfigSnapshot, RepoAuth } from "../domain/app-config.js";
import { SecretMasker } from "../domain/secrets.js";
import type { GitMirrors, GitRemote } from "../git/mirrors.js";
import { redactUrl } from "../git/remote-url.js";
import {
  type ConfigLoadStats,
  type ConfigProvider,
  type ConfigStatus,
  emptySnapshot,
  settlesWithin,
} from "./config-provider.js";
import { listManifestsAt, type ReadOptions, readBlob } from "./git-config-reader.js";
import { STARTUP_WAIT_MS } from "./manifest-limits.js";
import type { ManifestResult } from "./manifest-loader.js";
import { appNameOf } from "./manifest-names.js";
import type { ManifestParser } from "./manifest-parser.js";
import { SingleFlight } from "./single-flight.js";
import { buildSnapshot, type ManifestOutcome } from "./snapshot-builder.js";

/**
 * Configuration as code: the manifests are read from the head of one branch
 * of a git repository (see git-config-reader.ts for which files), and that
 * commit's SHA is the configuration revision.
 *
 * Each app is taken or refused on its own, as in a directory
 * (snapshot-builder.ts): a commit that breaks one app's manifest still
 * brings every other app's changes, and the broken app keeps the version of
 * the last commit where it was valid, with its problems reported against
 * this commit (`path@shortsha:line`). One team's mistake in a shared
 * configuration repository must not hold back every other team's changes,
 * nor stop the server.
 *
 * Only what changed is read and parsed: a blob id names its content, so a
 * manifest whose blob was parsed before is not read again; parsing happens
 * in the worker thread of manifest-parser.ts.
 */
export interface GitConfigOptions {
  url: string;
  branch: string;
  auth: RepoAuth;
  git: GitMirrors;
  parser: ManifestParser;
  /** Warnings that do not stop the server (the repository was unreachable at start-up). */
  report?: (message: string) => void;
  /** Limit for each git command that reads the mirror. */
  timeoutMs?: number;
  /** How long open() waits for the first load once the head is known (default STARTUP_WAIT_MS). */
  startupWaitMs?: number;
}

type Listener = (previous: ConfigSnapshot, next: ConfigSnapshot) => void;

const SHORT_SHA = 7;
const READ_TIMEOUT_MS = 60_000;

export class GitConfigSource implements ConfigProvider {
  private snapshot: ConfigSnapshot = emptySnapshot();
  private lastError: ConfigStatus["lastError"] = null;
  private loading: ConfigStatus["loading"] = [];
  /** Parse results by path, for the blob last parsed there. */
  private parsed = new Map<string, { object: string; result: ManifestResult }>();
  private reads = 0;
  private first: Promise<boolean> = Promise.resolve(false);
  private initial = true;
  private readonly listeners = new Set<Listener>();
  private readonly remote: GitRemote;
  private readonly flight = new SingleFlight(() => this.refreshNow());

  private constructor(private readonly options: GitConfigOptions) {
    this.remote = { url: options.url, auth: options.auth };
  }

  /**
   * Fetches the repository and starts loading its branch head; resolves when
   * that is done or the start-up wait is over. An unreachable repository
   * stops the server, unless an earlier fetch left a mirror to start from.
   */
  static async open(options: GitConfigOptions): Promise<GitConfigSource> {
    const source = new GitConfigSource(options);
    let head: string;
    try {
      head = await options.git.resolve(source.remote, options.branch);
    } catch (error) {
      const mirrored = await options.git.resolveLocal(source.remote, options.branch).catch(() => undefined);
      if (mirrored === undefined) throw error;
      options.report?.(
        `config: ${(error as Error).message}; starting from the copy fetched earlier (${mirrored.slice(0, 12)})`,
      );
      head = mirrored;
    }
    source.first = source.load(head);
    await settlesWithin(source.first, options.startupWaitMs ?? STARTUP_WAIT_MS);
    return source;
  }

  current(): ConfigSnapshot {
    return this.snapshot;
  }

  /**
   * Fetches and loads the branch head if it moved. Calls arriving while one
   * runs share a single next run, started after it: a webhook that lands
   * mid-fetch still gets a fetch that began after its push.
   */
  refresh(): Promise<boolean> {
    return this.flight.run();
  }

  async loaded(): Promise<void> {
    await this.first.catch(() => undefined);
  }

  status(): ConfigStatus {
    return {
      source: { kind: "git", url: redactUrl(this.options.url), branch: this.options.branch },
      revision: this.snapshot.revision,
      loadedAt: this.snapshot.loadedAt,
      problems: this.snapshot.problems,
      lastError: this.lastError,
      loading: this.loading,
    };
  }

  stats(): ConfigLoadStats {
    return { reads: this.reads, parses: this.options.parser.stats().parsed };
  }

  onChange(listener: Listener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private async refreshNow(): Promise<boolean> {
    await this.first.catch(() => undefined);
    const head = await this.options.git.resolve(this.remote, this.options.branch);
    if (head === this.snapshot.revision) {
      this.lastError = null; // the unreadable commit is no longer the head
      return false;
    }
    return this.load(head);
  }

  /** Reads the commit's manifests (only blobs not parsed before) and makes it the active configuration. */
  private async load(sha: string): Promise<boolean> {
    const short = sha.slice(0, SHORT_SHA);
    const label = (repoPath: string) => `${repoPath}@${short}`;
    const read: ReadOptions = {
      gitDir: this.options.git.mirrorPath(this.remote),
      sha,
      masker: new SecretMasker(this.options.git.secretsOf(this.remote)),
      timeoutMs: this.options.timeoutMs ?? READ_TIMEOUT_MS,
    };
    const outcomes: ManifestOutcome[] = [];
    const parsed = new Map<string, { object: string; result: ManifestResult }>();
    try {
      const entries = await listManifestsAt(read);
      this.loading = entries
        .filter((e) => "object" in e && this.parsed.get(e.path)?.object !== e.object)
        .map((e) => ({ app: appNameOf(e.path), file: label(e.path) }))
        .filter(({ app }) => !this.snapshot.apps.has(app));
      for (const entry of entries) {
        const app = appNameOf(entry.path);
        if ("refusal" in entry) {
          const problem: ConfigProblem = {
            file: label(entry.path),
            line: null,
            field: "(file)",
            message: entry.refusal,
          };
          outcomes.push({ app, label: label(entry.path), result: { problems: [problem] } });
          continue;
        }
        let known = this.parsed.get(entry.path);
        if (known?.object !== entry.object) {
          this.reads += 1;
          const text = await readBlob(read, entry.object, entry.path);
          // Parsed under its path in the repository (the app name comes from it), labelled with the commit below.
          known = { object: entry.object, result: await this.options.parser.parse(entry.path, text) };
        }
        parsed.set(entry.path, known);
        outcomes.push({ app, label: label(entry.path), result: labelled(known.result, label(entry.path)) });
      }
    } catch (error) {
      // The commit could not be read at all (the mirror, not a manifest): keep the active configuration.
      const problem = { file: short, line: null, field: "(commit)", message: (error as Error).message };
      this.lastError = { revision: sha, at: new Date().toISOString(), problems: [problem] };
      this.initial = false;
      return false;
    } finally {
      this.loading = [];
    }
    this.parsed = parsed;

    const previous = this.snapshot;
    this.snapshot = buildSnapshot(previous, sha, outcomes);
    this.lastError = null;
    const initial = this.initial;
    this.initial = false;
    if (!initial) for (const listener of this.listeners) listener(previous, this.snapshot);
    return true;
  }
}

/** A result parsed under the file's path, as this commit names it. */
function labelled(result: ManifestResult, file: string): ManifestResult {
  if ("app" in result) return { app: { ...result.app, source: file } };
  return { problems: result.problems.map((p) => ({ ...p, file })) };
}
