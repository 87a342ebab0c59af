import { spawn } from "node:child_process";
import { TurnoutError } from "../domain/errors.js";
import type { SecretMasker } from "../domain/secrets.js";
import { withTransportPolicy } from "./git-env.js";
import { runGit } from "./run-git.js";

/**
 * Reading a commit's tree straight from a mirror, without a checkout: what
 * a fleet artifact needs when there is nothing to build. `git ls-tree` names
 * every file with its object id, and object ids are content addresses, so a
 * caller that remembers what it learned of an id reads only the new blobs,
 * through one `git cat-file --batch`.
 */
export interface GitTreeEntry {
  /** Relative to the tree listed, `/`-separated. */
  path: string;
  kind: "file" | "executable" | "symlink" | "submodule";
  objectId: string;
  /** Bytes of the blob (0 for a submodule). */
  size: number;
}

/** A file whose content or mode changed between two commits (`git diff-tree`, status M). */
export interface GitTreeChange {
  path: string;
  kind: GitTreeEntry["kind"];
  objectId: string;
}

/** Receives blobs one after another, each as begin, its bytes, end. Throwing stops the read. */
export interface GitBlobSink {
  begin(objectId: string, size: number): void;
  data(chunk: Buffer): void;
  end(): void;
}

export interface GitTreeReader {
  /** The repository (its mirror's directory): what an earlier tree must share to be diffed against. */
  readonly repository: string;
  /** The commit read. */
  readonly commit: string;
  /** Every blob and submodule of the commit's tree, or of its subdirectory `subdir` (clean relative path). */
  list(subdir: string | null): Promise<GitTreeEntry[]>;
  /**
   * What changed from `from` (an earlier commit) to this one, in the tree
   * or `subdir`: null unless every change is a file whose content or mode
   * changed (anything added, removed, renamed or of another type).
   */
  diff(from: string, subdir: string | null): Promise<GitTreeChange[] | null>;
  /** The blobs' contents, in the order asked. */
  readBlobs(objectIds: readonly string[], sink: GitBlobSink): Promise<void>;
}

export interface TreeReaderOptions {
  gitDir: string;
  sha: string;
  env: Record<string, string>;
  masker: SecretMasker;
  timeoutMs: number;
}

const MODES: Record<string, GitTreeEntry["kind"]> = {
  "100644": "file",
  "100755": "executable",
  "120000": "symlink",
  "160000": "submodule",
};
const OBJECT_ID = /^[0-9a-f]{40}(?:[0-9a-f]{24})?$/;

export function gitTreeReader(options: TreeReaderOptions): GitTreeReader {
  return {
    repository: options.gitDir,
    commit: options.sha,
    list: (subdir) => listTree(options, subdir),
    diff: (from, subdir) => diffTree(options, from, subdir),
    readBlobs: (ids, sink) => readBlobs(options, ids, sink),
  };
}

async function listTree(options: TreeReaderOptions, subdir: string | null): Promise<GitTreeEntry[]> {
  // The tree-ish starts with the commit's hex id, so it can never be read as an option.
  const treeish = subdir === null ? options.sha : `${options.sha}:${subdir}`;
  const out = await runGit(["ls-tree", "-r", "-z", "--long", treeish], {
    what: `git ls-tree of ${treeish}`,
    cwd: options.gitDir,
    env: options.env,
    masker: options.masker,
    timeoutMs: options.timeoutMs,
  });
  const entries: GitTreeEntry[] = [];
  for (const record of out.split("\0")) {
    if (record === "") continue;
    // <mode> SP <type> SP <object> SP+ <size> TAB <path>
    const tab = record.indexOf("\t");
    const [mode, , objectId, size] = record.slice(0, tab).split(/ +/);
    const kind = MODES[mode ?? ""];
    if (tab === -1 || !kind || !OBJECT_ID.test(objectId ?? "")) {
      throw new TurnoutError(
        "E_GIT",
        `git ls-tree printed an entry it should not: ${JSON.stringify(record.slice(0, 200))}`,
      );
    }
    entries.push({
      path: record.slice(tab + 1),
      kind,
      objectId: objectId!,
      size: kind === "submodule" ? 0 : Number(size),
    });
  }
  return entries;
}

async function diffTree(
  options: TreeReaderOptions,
  from: string,
  subdir: string | null,
): Promise<GitTreeChange[] | null> {
  if (!OBJECT_ID.test(from))
    throw new TurnoutError("E_VALIDATION", `not a commit id: ${JSON.stringify(from)}`);
  const at = (sha: string) => (subdir === null ? sha : `${sha}:${subdir}`);
  // Both tree-ishes start with a hex commit id, so neither can be read as an option.
  const out = await runGit(["diff-tree", "-r", "-z", "--no-renames", at(from), at(options.sha)], {
    what: `git diff-tree of ${at(from)} and ${at(options.sha)}`,
    cwd: options.gitDir,
    env: options.env,
    masker: options.masker,
    timeoutMs: options.timeoutMs,
  });
  // :<old mode> <new mode> <old id> <new id> <status> NUL <path> NUL
  const fields = out.split("\0");
  const changes: GitTreeChange[] = [];
  for (let i = 0; i + 1 < fields.length; i += 2) {
    const [oldMode, newMode, , objectId, status] = fields[i]!.replace(/^:/, "").split(" ");
    const before = MODES[oldMode ?? ""];
    const kind = MODES[newMode ?? ""];
    if (status !== "M" || !kind || !OBJECT_ID.test(objectId ?? "")) return null;
    if (before !== "file" && before !== "executable") return null;
    changes.push({ path: fields[i + 1]!, kind, objectId: objectId! });
  }
  return changes;
}

/**
 * `git cat-file --batch`: for each id on stdin, `<id> <type> <size>\n`, the
 * bytes, `\n`. Parsed as it streams, so a large blob is never held whole.
 */
function readBlobs(options: TreeReaderOptions, ids: readonly string[], sink: GitBlobSink): Promise<void> {
  if (ids.length === 0) return Promise.resolve();
  for (const id of ids) {
    if (!OBJECT_ID.test(id))
      throw new TurnoutError("E_VALIDATION", `not a git object id: ${JSON.stringify(id)}`);
  }
  return new Promise((resolve, reject) => {
    const child = spawn("git", ["cat-file", "--batch"], {
      cwd: options.gitDir,
      env: withTransportPolicy(options.env),
      shell: false,
      stdio: ["pipe", "pipe", "pipe"],
    });
    let failure: Error | undefined;
    const fail = (error: Error) => {
      failure ??= error;
      child.kill("SIGKILL");
    };
    const timer = setTimeout(
      () => fail(new TurnoutError("E_GIT", `git cat-file timed out after ${options.timeoutMs} ms`)),
      options.timeoutMs,
    );
    let stderr = "";
    child.stderr.setEncoding("utf8").on("data", (text: string) => {
      stderr = (stderr + text).slice(-2000);
    });

    let header: Buffer[] = [];
    let left = -1; // bytes of the current blob still to come; -1: reading a header
    let newline = false; // the `\n` after a blob's bytes is still to come
    let done = 0;
    child.stdout.on("data", (chunk: Buffer) => {
      if (failure) return;
      try {
        let at = 0;
        while (at < chunk.length) {
          if (newline) {
            at++;
            newline = false;
            continue;
          }
          if (left === -1) {
            const end = chunk.indexOf(10, at);
            if (end === -1) {
              header.push(chunk.subarray(at));
              break;
            }
            const line = Buffer.concat([...header, chunk.subarray(at, end)]).toString("utf8");
            header = [];
            at = end + 1;
            const match = /^([0-9a-f]+) blob (\d+)$/.exec(line);
            if (!match || match[1] !== ids[done]) {
              throw new TurnoutError(
                "E_GIT",
                `git cat-file: expected blob ${ids[done]}, got ${JSON.stringify(line.slice(0, 120))}`,
              );
            }
            left = Number(match[2]);
            sink.begin(match[1]!, left);
          }
          const take = Math.min(left, chunk.length - at);
          if (take > 0) sink.data(chunk.subarray(at, at + take));
          left -= take;
          at += take;
          if (left === 0) {
            sink.end();
            left = -1;
            newline = true;
            done++;
          }
        }
      } catch (error) {
        fail(error as Error);
      }
    });
    child.stdin.on("error", () => {}); // git may exit before reading it all; the exit code tells
    child.stdin.end(`${ids.join("\n")}\n`);
    child.on("error", (error) =>
      fail(new TurnoutError("E_GIT", `git cat-file could not start: ${error.message}`)),
    );
    child.on("close", (code) => {
      clearTimeout(timer);
      if (failure) return reject(failure);
      if (code !== 0 || done !== ids.length) {
        const why = options.masker.mask(stderr.trim().split("\n").pop() ?? "");
        return reject(
          new TurnoutError(
            "E_GIT",
            `git cat-file failed (exit ${code}, ${done} of ${ids.length} blobs)${why ? `: ${why}` : ""}`,
          ),
        );
      }
      resolve();
    });
  });
}
