import type { AppConfig, ConfigProblem, ConfigSnapshot, RepoAuth } from "../domain/app-config.js";
import { SecretMasker } from "../domain/secrets.js";
import type { GitMirrors, GitRemote } from "../git/mirrors.js";
import { redactUrl } from "../git/remote-url.js";
import type { ConfigProvider, ConfigStatus } from "./config-provider.js";
import { readManifestsAt } from "./git-config-reader.js";
import { type LoadOptions, parseManifest } from "./manifest-loader.js";

/**
 * Configuration as code: the manifests are read from the head of one branch
 * of a git repository (see git-config-reader.ts for which files), and that
 * commit's SHA is the configuration revision.
 *
 * Unlike a directory, a commit is taken or refused as a whole: a commit is a
 * deliberate, reviewable change of the configuration, so applying half of it
 * (say, the new production settings without the new staging ones) would
 * produce a configuration nobody wrote. A refused commit leaves the last valid
 * one active and is reported as `lastError` until something else is seen at
 * the head of the branch: a valid commit (which becomes active), or the active
 * commit itself (the bad one was reverted by a force-push). So `lastError` is
 * set exactly when the branch head is a commit that was refused.
 */
export interface GitConfigOptions {
  url: string;
  branch: string;
  auth: RepoAuth;
  git: GitMirrors;
  load: LoadOptions;
  /** Warnings that do not stop the server (the repository was unreachable at start-up). */
  report?: (message: string) => void;
  /** Limit for each git command that reads the mirror. */
  timeoutMs?: number;
}

type Listener = (previous: ConfigSnapshot, next: ConfigSnapshot) => void;

const SHORT_SHA = 7;
const READ_TIMEOUT_MS = 60_000;

export class GitConfigSource implements ConfigProvider {
  private snapshot: ConfigSnapshot;
  private lastError: ConfigStatus["lastError"] = null;
  private readonly listeners = new Set<Listener>();
  private readonly remote: GitRemote;
  private running: Promise<boolean> | undefined;
  private queued: Promise<boolean> | undefined;

  private constructor(private readonly options: GitConfigOptions) {
    this.remote = { url: options.url, auth: options.auth };
    // Until a valid commit is seen there is no configuration: zero apps, no revision.
    this.snapshot = { revision: "", apps: new Map(), problems: [], loadedAt: new Date().toISOString() };
  }

  /**
   * Fetches the repository and loads its branch head. A head that fails
   * validation does not stop the server: it starts with zero apps and the
   * refusal in `lastError`. An unreachable repository does stop it, unless an
   * earlier fetch left a mirror to start from.
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
    await source.load(head);
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
    if (!this.running) {
      this.running = this.refreshNow().finally(() => {
        this.running = undefined;
      });
      return this.running;
    }
    if (!this.queued) {
      this.queued = this.running
        .catch(() => false)
        .then(() => {
          this.queued = undefined;
          return this.refresh();
        });
    }
    return this.queued;
  }

  status(): ConfigStatus {
    return {
      source: { kind: "git", url: redactUrl(this.options.url), branch: this.options.branch },
      revision: this.snapshot.revision,
      loadedAt: this.snapshot.loadedAt,
      problems: this.snapshot.problems,
      lastError: this.lastError,
    };
  }

  onChange(listener: Listener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private async refreshNow(): Promise<boolean> {
    const head = await this.options.git.resolve(this.remote, this.options.branch);
    if (head === this.snapshot.revision) {
      this.lastError = null; // the refused commit is no longer the head
      return false;
    }
    if (head === this.lastError?.revision) return false; // refused already; a commit never changes
    return this.load(head);
  }

  /** Reads and validates the commit; makes it active (true) or records its refusal (false). */
  private async load(sha: string): Promise<boolean> {
    const short = sha.slice(0, SHORT_SHA);
    const label = (repoPath: string) => `${repoPath}@${short}`;
    const files = await readManifestsAt({
      gitDir: this.options.git.mirrorPath(this.remote),
      sha,
      label,
      masker: new SecretMasker(this.options.git.secretsOf(this.remote)),
      timeoutMs: this.options.timeoutMs ?? READ_TIMEOUT_MS,
    });

    const apps = new Map<string, AppConfig>();
    const problems: ConfigProblem[] = [];
    for (const file of files) {
      if ("problem" in file) {
        problems.push(file.problem);
        continue;
      }
      // Parsed under its path in the repository (the app name comes from it), reported with the commit.
      const result = parseManifest(file.path, file.text, this.options.load);
      if ("problems" in result) {
        problems.push(...result.problems.map((p) => ({ ...p, file: label(file.path) })));
        continue;
      }
      const app = { ...result.app, source: label(file.path) };
      const twin = apps.get(app.name);
      if (twin) {
        problems.push({
          file: app.source,
          line: null,
          field: "(file name)",
          message: `app '${app.name}' is already defined by ${twin.source}`,
        });
        continue;
      }
      apps.set(app.name, app);
    }

    const at = new Date().toISOString();
    if (problems.length > 0) {
      this.lastError = { revision: sha, at, problems };
      return false;
    }
    const previous = this.snapshot;
    this.snapshot = { revision: sha, apps, problems: [], loadedAt: at };
    this.lastError = null;
    for (const listener of this.listeners) listener(previous, this.snapshot);
    return true;
  }
}
