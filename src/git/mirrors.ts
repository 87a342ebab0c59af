import { randomBytes } from "node:crypto";
import { access, mkdir, readdir, rename, rm, stat } from "node:fs/promises";
import path from "node:path";
import type { RepoAuth } from "../domain/app-config.js";
import { isTurnoutError, TurnoutError } from "../domain/errors.js";
import { assertSha, isFullSha, parseRevision } from "../domain/refs.js";
import { SecretMasker } from "../domain/secrets.js";
import { BatchCheck } from "./batch-check.js";
import { FetchQueue } from "./fetch-queue.js";
import { baseGitEnv, credentialEnv, remoteSecrets } from "./git-env.js";
import { maintenanceDue } from "./maintenance-due.js";
import { mirrorName, redactUrl, remoteKind } from "./remote-url.js";
import {
  ambiguousError,
  type CandidateCommit,
  notFoundError,
  pickResolved,
  refCandidates,
  stepsArgs,
} from "./resolve-ref.js";
import { type GitOutput, runGit } from "./run-git.js";
import { ensureSshWrapper } from "./ssh-wrapper.js";
import { type GitTreeReader, gitTreeReader } from "./tree-reader.js";
import { createWorkspaceFromMirror, type Workspace } from "./workspace.js";

export type { GitOutput } from "./run-git.js";
export type { GitBlobSink, GitTreeEntry, GitTreeReader } from "./tree-reader.js";
export type { Workspace } from "./workspace.js";

/** One commit as the change preview shows it. */
export interface CommitInfo {
  sha: string;
  author: string;
  /** ISO 8601 author date. */
  date: string;
  subject: string;
}

/** url: ssh (git@host:x.git, ssh://), https://, file:// or a local path. */
export interface GitRemote {
  url: string;
  auth: RepoAuth;
}

const DEFAULT_TIMEOUT_MS = 10 * 60 * 1000;
// Refs a mirror holds: branches and tags, nothing else (no pull/merge-request refs).
const MIRROR_REFSPECS = ["+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"];

/**
 * The server's copies of app repositories: one bare mirror per URL under
 * `<dataDir>/git`, cloned from the origin once and fetched incrementally after
 * that, so every deploy costs only what is new. The origin URL is never stored
 * in a mirror (it is given to each fetch), so neither are credentials in it.
 */
export class GitMirrors {
  private readonly dir: string;
  private readonly timeoutMs: number;
  private readonly queue = new FetchQueue();
  private sshWrapper: Promise<string> | undefined;
  private beforeFetchHook: ((url: string) => Promise<void>) | undefined;
  /** The long-lived `cat-file --batch-check` of each mirror that resolved a ref (batch-check.ts). */
  private readonly batchChecks = new Map<string, BatchCheck>();
  /** Maintenance running after a fetch, by mirror (see maintain()). */
  private readonly maintenance = new Map<string, Promise<void>>();

  constructor(options: { dir: string; timeoutMs?: number }) {
    this.dir = path.resolve(options.dir);
    this.timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  }

  /**
   * Runs before every fetch from an origin, in the fetch's turn: a hosted
   * repository shared between servers catches up there (shared-hosted-repos.ts).
   */
  beforeFetch(hook: (url: string) => Promise<void>): void {
    this.beforeFetchHook = hook;
  }

  /**
   * Clones the mirror on first use, fetches it after. One fetch at a time per
   * mirror; callers arriving while one runs share the next (whose progress goes
   * to the first of them's `output`).
   */
  async fetch(remote: GitRemote, output?: GitOutput): Promise<void> {
    remoteKind(remote.url); // refuse unsupported URLs before queueing anything
    return this.queue.run(this.mirrorPath(remote), () => this.fetchNow(remote, output));
  }

  /**
   * Fetches, then resolves a branch, tag, full or short SHA, with optional
   * ancestry steps (`main~1`, `v1.2^`), to a full commit SHA.
   */
  async resolve(remote: GitRemote, ref: string, output?: GitOutput): Promise<string> {
    const revision = parseRevision(ref);
    // A full SHA the mirror already holds names that commit whatever the origin does since
    // (and so do its ancestry steps): no fetch, which is most of a deploy request's time.
    // Asked of the long-lived cat-file only: "not there" is answered by the fetch that follows,
    // with no second process to confirm it (most deploys name a commit the mirror has not seen).
    if (isFullSha(revision.ref) && (await exists(this.mirrorPath(remote)))) {
      const known = await this.resolveLocal(remote, ref, { confirmMissing: false }).catch(
        (error: unknown) => {
          if (isTurnoutError(error) && error.code === "E_REF_NOT_FOUND") return undefined;
          throw error;
        },
      );
      if (known !== undefined) return known;
    }
    await this.fetch(remote, output);
    return this.resolveLocal(remote, ref);
  }

  /**
   * Resolves against the mirror as it is (fetching only if there is no mirror
   * yet). `confirmMissing: false`: a "not found" from the long-lived cat-file
   * is taken as it is, for a caller that fetches next anyway.
   */
  async resolveLocal(
    remote: GitRemote,
    ref: string,
    { confirmMissing = true }: { confirmMissing?: boolean } = {},
  ): Promise<string> {
    const revision = parseRevision(ref);
    const mirror = this.mirrorPath(remote);
    if (!(await exists(mirror))) await this.fetch(remote);
    const where = redactUrl(remote.url);
    const run = (args: string[], what: string, input?: string) =>
      runGit(args, {
        what,
        cwd: mirror,
        env: baseGitEnv(),
        ...(input === undefined ? {} : { input }),
        timeoutMs: this.timeoutMs,
        masker: this.maskerFor(remote),
      });
    const candidates = refCandidates(revision.ref);
    const newProcess = async () =>
      pickResolved(
        candidates,
        await run(
          ["-c", "core.disambiguate=commit", "cat-file", "--batch-check"],
          `resolving ${JSON.stringify(revision.ref)} in ${where}`,
          candidates.input,
        ),
      );
    // Names of refs and full SHAs go to the mirror's long-lived cat-file (batch-check.ts); a
    // short SHA, whose ambiguity that process could judge from a stale cache, and any trouble or
    // "not found" there (the answer that matters most to get right) go to a new process.
    const kept =
      candidates.shaIndex === undefined || isFullSha(revision.ref)
        ? await this.batchCheck(mirror)
            .ask(candidates.input)
            .then(
              (lines) => pickResolved(candidates, `${lines.join("\n")}\n`),
              () => undefined,
            )
        : undefined;
    const picked = kept === undefined || ("missing" in kept && confirmMissing) ? await newProcess() : kept;
    if ("ambiguous" in picked) {
      throw ambiguousError(revision.ref, where, await this.commitsStartingWith(remote, revision.ref));
    }
    if ("missing" in picked) throw notFoundError(revision, where);
    if (revision.steps === "") return picked.sha;
    try {
      const sha = (
        await run(stepsArgs(picked.sha, revision.steps), `resolving ${JSON.stringify(ref)}`)
      ).trim();
      if (isFullSha(sha)) return sha;
    } catch (error) {
      // --verify --quiet: exit 1 and nothing printed when the commit has no such ancestor.
      if (!(isTurnoutError(error) && error.details?.["exitCode"] === 1)) throw error;
    }
    throw notFoundError(revision, where, picked.sha);
  }

  /** The commits whose SHA starts with `prefix` (hex, checked), newest first: what an ambiguous SHA could mean. */
  private async commitsStartingWith(remote: GitRemote, prefix: string): Promise<CandidateCommit[]> {
    const options = {
      what: `listing the commits starting with ${prefix}`,
      cwd: this.mirrorPath(remote),
      env: baseGitEnv(),
      timeoutMs: this.timeoutMs,
      masker: this.maskerFor(remote),
    };
    // The prefix is glued to the option and was checked to be hex: it can never be read as another option.
    const objects = (await runGit(["rev-parse", `--disambiguate=${prefix.toLowerCase()}`], options))
      .split("\n")
      .filter(isFullSha);
    if (objects.length === 0) return [];
    const types = await runGit(["cat-file", "--batch-check"], {
      ...options,
      input: `${objects.join("\n")}\n`,
    });
    const commits = types
      .split("\n")
      .map((line) => line.split(" "))
      .filter(([sha, type]) => sha !== undefined && isFullSha(sha) && type === "commit")
      .map(([sha]) => sha!)
      .slice(0, 100);
    if (commits.length === 0) return [];
    const log = await runGit(
      [
        "log",
        "--no-walk=unsorted",
        "--no-color",
        "--format=%H%x00%cs%x00%ct%x00%s",
        "--end-of-options",
        ...commits,
        "--",
      ],
      options,
    );
    return log
      .split("\n")
      .map((line) => line.split("\0"))
      .filter(([sha]) => sha !== undefined && isFullSha(sha))
      .sort((a, b) => Number(b[2]) - Number(a[2]))
      .map(([sha, date, , subject]) => ({ sha: sha!, date: date ?? "", subject: subject ?? "" }));
  }

  /**
   * Commits reachable from `to` but not from `from` (all of `to`'s history when
   * `from` is null), newest first, at most `limit`. Read from the mirror as
   * it is: fetch first if it must be current.
   */
  async log(remote: GitRemote, from: string | null, to: string, limit: number): Promise<CommitInfo[]> {
    assertSha(to);
    if (from !== null) assertSha(from);
    const range = from === null ? [to] : [to, `^${from}`];
    const stdout = await runGit(
      [
        "log",
        "--no-color",
        `--max-count=${Math.max(1, Math.floor(limit))}`,
        "--format=%H%x00%an%x00%aI%x00%s%x1e",
        ...range,
        "--",
      ],
      {
        what: `git log of ${redactUrl(remote.url)}`,
        cwd: this.mirrorPath(remote),
        env: baseGitEnv(),
        timeoutMs: this.timeoutMs,
        masker: this.maskerFor(remote),
      },
    );
    return stdout
      .split("\x1e")
      .map((record) => record.trim())
      .filter((record) => record.length > 0)
      .map((record) => {
        const [sha, author, date, subject] = record.split("\0");
        return { sha: sha!, author: author ?? "", date: date ?? "", subject: subject ?? "" };
      });
  }

  /**
   * A fresh checkout of `sha` (40 hex) in `dir`, which must not exist yet,
   * submodules included. `secrets`: more values to mask in git's output (a
   * deploy's), since git's lines are cut to length before they reach the log.
   */
  async createWorkspace(
    remote: GitRemote,
    sha: string,
    dir: string,
    output?: GitOutput,
    secrets: readonly string[] = [],
  ): Promise<Workspace> {
    assertSha(sha);
    const job = {
      mirror: this.mirrorPath(remote),
      url: this.gitUrl(remote),
      sha,
      dir,
      localEnv: baseGitEnv(),
      remoteEnv: await this.remoteEnv(remote),
      masker: this.maskerFor(remote).with(secrets),
      timeoutMs: this.timeoutMs,
      output,
    };
    try {
      return await createWorkspaceFromMirror(job);
    } catch (error) {
      // Checking out is the fast path; only when it fails do we ask whether the
      // mirror lacks the commit (another server resolved it, or no mirror yet).
      if ((await exists(job.mirror)) && (await this.hasCommit(remote, sha))) throw error;
      await this.fetch(remote, output);
      if (!(await this.hasCommit(remote, sha))) {
        throw new TurnoutError("E_REF_NOT_FOUND", `commit ${sha} not found in ${redactUrl(remote.url)}`, {
          ref: sha,
        });
      }
      return createWorkspaceFromMirror(job);
    }
  }

  /**
   * Reads a commit's tree straight from the mirror, without a checkout (fleet
   * artifacts with nothing to build), fetching first if the mirror lacks it.
   */
  treeReader(remote: GitRemote, sha: string): GitTreeReader {
    assertSha(sha);
    const reader = gitTreeReader({
      gitDir: this.mirrorPath(remote),
      sha,
      env: baseGitEnv(),
      masker: this.maskerFor(remote),
      timeoutMs: this.timeoutMs,
    });
    // Another server may have resolved the commit (or received its push):
    // the first read fetches when this mirror lacks it, as checkouts do.
    let present: Promise<void> | undefined;
    const ensure = () => {
      present ??= this.hasCommit(remote, sha).then((has) => (has ? undefined : this.fetch(remote)));
      return present;
    };
    return {
      repository: reader.repository,
      commit: reader.commit,
      list: async (subdir) => {
        await ensure();
        return reader.list(subdir);
      },
      diff: async (from, subdir) => {
        await ensure();
        return reader.diff(from, subdir);
      },
      readBlobs: async (ids, sink) => {
        await ensure();
        return reader.readBlobs(ids, sink);
      },
    };
  }

  /** Stops the mirrors' long-lived git processes (they also end by themselves when idle, or with the server). */
  close(): void {
    for (const check of this.batchChecks.values()) check.close();
    this.batchChecks.clear();
  }

  private batchCheck(mirror: string): BatchCheck {
    let check = this.batchChecks.get(mirror);
    if (!check) {
      check = new BatchCheck({ gitDir: mirror, env: baseGitEnv(), timeoutMs: this.timeoutMs });
      this.batchChecks.set(mirror, check);
    }
    return check;
  }

  /** Secret values git might print for this remote, for the caller's log masker. */
  secretsOf(remote: GitRemote): string[] {
    return remoteSecrets(remote.url, remote.auth);
  }

  /** Where the mirror of this remote lives (named by a hash of the URL). */
  mirrorPath(remote: GitRemote): string {
    return path.join(this.dir, mirrorName(remote.url));
  }

  private async fetchNow(remote: GitRemote, output?: GitOutput): Promise<void> {
    const mirror = this.mirrorPath(remote);
    await this.maintenance.get(mirror);
    await this.beforeFetchHook?.(remote.url);
    if (await exists(mirror)) {
      output?.(`fetching ${redactUrl(remote.url)}`);
      if (await this.fetchInto(mirror, remote, output)) this.maintain(mirror, remote);
      return;
    }
    output?.(`cloning ${redactUrl(remote.url)} (first use)`);
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    await this.sweepStaleClones(path.basename(mirror));
    // Cloned under a temporary name and renamed when complete: a crash or a
    // failed clone never leaves a half-filled mirror under the real name.
    const temp = path.join(this.dir, `.tmp-${path.basename(mirror)}-${randomBytes(6).toString("hex")}`);
    try {
      await runGit(["init", "--bare", "--quiet", "--", temp], {
        what: "git init of a mirror",
        env: baseGitEnv(),
        timeoutMs: this.timeoutMs,
        masker: this.maskerFor(remote),
        output,
      });
      const changed = await this.fetchInto(temp, remote, output);
      await rename(temp, mirror).catch(async (err: NodeJS.ErrnoException) => {
        // Another process finished the same clone first: theirs is as good as ours.
        if (err.code !== "ENOTEMPTY" && err.code !== "EEXIST") throw err;
        await rm(temp, { recursive: true, force: true });
      });
      if (changed) this.maintain(mirror, remote);
    } catch (err) {
      await rm(temp, { recursive: true, force: true }).catch(() => {});
      throw err;
    }
  }

  /**
   * Fetches; true when git reported anything (it prints nothing when no ref
   * changed). git's own `maintenance run --auto` after every fetch is turned
   * off: a fetch that brought nothing has nothing to pack, and the check is
   * one more process (some 8 ms here) on every deploy request's path. A fetch
   * that changed something gets the same maintenance when it is due, from
   * maintain().
   */
  private async fetchInto(gitDir: string, remote: GitRemote, output?: GitOutput): Promise<boolean> {
    let reported = false;
    await runGit(
      [
        "fetch",
        "--no-auto-maintenance",
        "--prune",
        "--no-tags",
        "--no-write-fetch-head",
        "--",
        this.gitUrl(remote),
        ...MIRROR_REFSPECS,
      ],
      {
        what: `git fetch from ${redactUrl(remote.url)}`,
        cwd: gitDir,
        env: await this.remoteEnv(remote),
        timeoutMs: this.timeoutMs,
        masker: this.maskerFor(remote),
        output: (line) => {
          reported = true;
          output?.(line);
        },
      },
    );
    return reported;
  }

  /**
   * `git maintenance run --auto` (what git fetch would have run: packs loose
   * objects and refs when there are many), after the fetch's callers have
   * their answer, and only when git's own thresholds say it would do
   * something (maintenance-due.ts); the mirror's next fetch waits for it. A
   * failure is left for the next one, as git's own auto-maintenance does.
   */
  private maintain(mirror: string, remote: GitRemote): void {
    const run = maintenanceDue(mirror)
      .then(async (due) => {
        if (!due) return;
        await runGit(["maintenance", "run", "--auto", "--quiet"], {
          what: `git maintenance of the mirror of ${redactUrl(remote.url)}`,
          cwd: mirror,
          env: baseGitEnv(),
          timeoutMs: this.timeoutMs,
          masker: this.maskerFor(remote),
        });
      })
      .then(
        () => undefined,
        () => undefined,
      );
    this.maintenance.set(mirror, run);
    void run.then(() => {
      if (this.maintenance.get(mirror) === run) this.maintenance.delete(mirror);
    });
  }

  private async hasCommit(remote: GitRemote, sha: string): Promise<boolean> {
    const mirror = this.mirrorPath(remote);
    if (!(await exists(mirror))) return false;
    const stdout = await runGit(["cat-file", "--batch-check"], {
      what: `looking up ${sha} in ${redactUrl(remote.url)}`,
      cwd: mirror,
      env: baseGitEnv(),
      input: `${sha}^{commit}\n`,
      timeoutMs: this.timeoutMs,
      masker: this.maskerFor(remote),
    });
    return stdout.startsWith(`${sha} commit`);
  }

  // Leftovers of clones interrupted by a crash; anything older than two timeouts is dead.
  private async sweepStaleClones(name: string): Promise<void> {
    const prefix = `.tmp-${name}-`;
    const entries = await readdir(this.dir).catch(() => [] as string[]);
    for (const entry of entries) {
      if (!entry.startsWith(prefix)) continue;
      const full = path.join(this.dir, entry);
      const info = await stat(full).catch(() => undefined);
      if (info && Date.now() - info.mtimeMs > 2 * this.timeoutMs) {
        await rm(full, { recursive: true, force: true }).catch(() => {});
      }
    }
  }

  private async remoteEnv(remote: GitRemote): Promise<Record<string, string>> {
    if (!this.sshWrapper) {
      this.sshWrapper = mkdir(this.dir, { recursive: true, mode: 0o700 }).then(() =>
        ensureSshWrapper(this.dir),
      );
      this.sshWrapper.catch(() => {
        this.sshWrapper = undefined; // let the next call try again
      });
    }
    return { ...baseGitEnv(), ...credentialEnv(remote.url, remote.auth, await this.sshWrapper) };
  }

  // Local paths are made absolute: git runs with the mirror as its working directory.
  private gitUrl(remote: GitRemote): string {
    return remoteKind(remote.url) === "local" ? path.resolve(remote.url) : remote.url;
  }

  private maskerFor(remote: GitRemote): SecretMasker {
    return new SecretMasker(this.secretsOf(remote));
  }
}

function exists(file: string): Promise<boolean> {
  return access(file).then(
    () => true,
    () => false,
  );
}
