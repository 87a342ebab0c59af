import { execFile } from "node:child_process";
import { createReadStream } from "node:fs";
import { lstat, readdir, readlink, stat } from "node:fs/promises";
import path from "node:path";
import { Readable } from "node:stream";
import { createGzip } from "node:zlib";
import { type Header, type Pack, pack as tarPack } from "tar-stream";
import { InvalidSettingError } from "../config/client-settings.js";

/**
 * The working tree of an emergency deploy, as the CLI reads it on the user's
 * machine: the commit it started from, the files changed from that commit,
 * and the files to ship. In a git work tree those are the files git would
 * track (committed, or untracked but not ignored: .gitignore, .git/info/exclude
 * and the global excludes apply); elsewhere every file but `.git`. git runs
 * with argv arrays, and `--` before paths.
 */
export interface WorkingTree {
  root: string;
  /** The commit HEAD names (null: not a git work tree, or no commit yet). */
  base: string | null;
  /** Paths changed from `base`, relative to `root` (modified, staged, deleted, untracked). */
  changed: string[];
  /** Paths to ship, relative to `root`. */
  files: string[];
}

const MAX_GIT_OUTPUT = 256 * 1024 * 1024;

export async function readWorkingTree(dir: string): Promise<WorkingTree> {
  const root = path.resolve(dir);
  const info = await stat(root).catch(() => undefined);
  if (!info?.isDirectory()) throw new InvalidSettingError(`--from-dir: ${dir} is not a directory`);
  const inside = await git(root, ["rev-parse", "--is-inside-work-tree"]).catch(() => "");
  if (inside.trim() !== "true") return { root, base: null, changed: [], files: await walk(root) };
  const base = (
    await git(root, ["rev-parse", "--verify", "--quiet", "HEAD^{commit}"]).catch(() => "")
  ).trim();
  const files = nulSeparated(
    await git(root, ["ls-files", "--cached", "--others", "--exclude-standard", "-z"]),
  );
  const untracked = nulSeparated(await git(root, ["ls-files", "--others", "--exclude-standard", "-z"]));
  const modified = base
    ? nulSeparated(await git(root, ["diff", "--name-only", "--relative", "--no-renames", "-z", "HEAD", "--"]))
    : [];
  return {
    root,
    base: base === "" ? null : base,
    changed: base === "" ? [] : [...new Set([...modified, ...untracked])].sort(),
    files: [...new Set(files)].sort(),
  };
}

/**
 * The files as a gzipped tar stream. A file listed but gone (deleted in the
 * tree) is left out; links are kept as links; a nested repository (a
 * submodule, listed as a directory) is left out and reported.
 */
export function packTree(tree: WorkingTree, skipped: (file: string, why: string) => void): Readable {
  const pack = tarPack();
  void (async () => {
    try {
      for (const file of tree.files) {
        const absolute = path.join(tree.root, file);
        const entry = await lstat(absolute).catch(() => undefined);
        if (!entry) continue;
        if (entry.isSymbolicLink()) {
          await add(pack, { name: file, type: "symlink", linkname: await readlink(absolute) });
        } else if (entry.isFile()) {
          await add(
            pack,
            { name: file, type: "file", size: entry.size, mode: entry.mode & 0o111 ? 0o755 : 0o644 },
            absolute,
          );
        } else {
          skipped(file, entry.isDirectory() ? "a nested repository (submodule)" : "not a file or link");
        }
      }
      pack.finalize();
    } catch (error) {
      pack.destroy(error as Error);
    }
  })();
  return pack.pipe(createGzip());
}

function add(pack: Pack, header: Partial<Header> & Pick<Header, "name">, source?: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const sink = pack.entry(header, (error) => (error ? reject(error) : resolve()));
    if (source === undefined) return;
    createReadStream(source)
      .on("error", (error) => {
        sink.destroy(error);
        reject(error);
      })
      .pipe(sink);
  });
}

/** Every file and link below `root` but `.git`, for a tree outside git. */
async function walk(root: string): Promise<string[]> {
  const out: string[] = [];
  const visit = async (relative: string): Promise<void> => {
    const entries = await readdir(path.join(root, relative), { withFileTypes: true });
    for (const entry of entries) {
      if (entry.name === ".git") continue;
      const child = relative === "" ? entry.name : `${relative}/${entry.name}`;
      if (entry.isDirectory()) await visit(child);
      else out.push(child);
    }
  };
  await visit("");
  return out.sort();
}

function nulSeparated(text: string): string[] {
  return text.split("\0").filter((s) => s !== "");
}

function git(cwd: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      "git",
      args,
      { cwd, maxBuffer: MAX_GIT_OUTPUT, encoding: "utf8", env: { ...process.env, GIT_OPTIONAL_LOCKS: "0" } },
      (error, stdout) => (error ? reject(error) : resolve(stdout)),
    );
  });
}

/** The stream as a web stream, for fetch. */
export function webStream(stream: Readable): ReadableStream<Uint8Array> {
  return Readable.toWeb(stream) as ReadableStream<Uint8Array>;
}
