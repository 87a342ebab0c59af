import { randomBytes } from "node:crypto";
import { chmod, lstat, mkdir, open, readdir, rename, rm, symlink } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { TurnoutError } from "../../domain/errors.js";

/**
 * Small filesystem building blocks of the host layout. Everything that makes
 * a name visible (a release, a pointer, a cache blob) goes through a rename,
 * so a reader sees either the old state or the new one, never a half-written
 * thing under its final name.
 */

export function nonce(): string {
  return randomBytes(6).toString("hex");
}

export function errorCode(error: unknown): string | undefined {
  return (error as NodeJS.ErrnoException | null)?.code;
}

/** Whether `path` is a directory itself (a symlink to one does not count). */
export async function isRealDir(path: string): Promise<boolean> {
  try {
    return (await lstat(path)).isDirectory();
  } catch (error) {
    if (errorCode(error) === "ENOENT" || errorCode(error) === "ENOTDIR") return false;
    throw error;
  }
}

/**
 * mkdir that refuses to work through a symlink: the layout's own directories
 * must be real, or a planted link could make us write outside the root.
 */
export async function ensureRealDir(path: string, mode = 0o755): Promise<void> {
  await mkdir(path, { recursive: true, mode });
  const stat = await lstat(path);
  if (!stat.isDirectory()) {
    throw new TurnoutError("E_CONFLICT", `${path} exists and is not a directory (a symlink or a file)`, {
      path,
    });
  }
}

/** fsync a file or directory by path (directories: so that new entries survive a crash). */
export async function fsyncPath(path: string): Promise<void> {
  const handle = await open(path, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Points `linkPath` at `target` atomically: a new symlink under a temp name, renamed over the old one. */
export async function atomicSymlink(target: string, linkPath: string, fsyncs: boolean): Promise<void> {
  const dir = dirname(linkPath);
  const tmp = join(dir, `.${basename(linkPath)}.tmp-${nonce()}`);
  await symlink(target, tmp);
  try {
    await rename(tmp, linkPath);
  } catch (error) {
    await rm(tmp, { force: true });
    if (errorCode(error) === "EISDIR" || errorCode(error) === "ENOTEMPTY" || errorCode(error) === "EEXIST") {
      throw new TurnoutError("E_CONFLICT", `${linkPath} is a directory, not a release pointer`, {
        path: linkPath,
      });
    }
    throw error;
  }
  if (fsyncs) await fsyncPath(dir);
}

/**
 * rm -rf that also copes with directories a hook made read-only (rm needs
 * write permission on a directory to unlink its children). Never follows
 * symlinks: chmod only touches real directories found by lstat.
 */
export async function removeTree(path: string): Promise<void> {
  try {
    await rm(path, { recursive: true, force: true });
  } catch (error) {
    if (errorCode(error) !== "EACCES" && errorCode(error) !== "EPERM") throw error;
    await makeWritable(path);
    await rm(path, { recursive: true, force: true });
  }
}

async function makeWritable(path: string): Promise<void> {
  const stat = await lstat(path).catch(() => undefined);
  if (!stat?.isDirectory()) return;
  await chmod(path, (stat.mode & 0o777) | 0o700);
  for (const entry of await readdir(path, { withFileTypes: true })) {
    if (entry.isDirectory()) await makeWritable(join(path, entry.name));
  }
}

/**
 * Runs `fn` over `items`, at most `limit` at a time. The first failure stops
 * the rest: the signal handed to `fn` is aborted so in-flight work (downloads)
 * ends promptly, and we still wait for every started call to settle before
 * rethrowing, so the caller's cleanup never races with a write in progress.
 */
export async function mapLimit<T>(
  items: readonly T[],
  limit: number,
  fn: (item: T, signal: AbortSignal) => Promise<void>,
  signal: AbortSignal,
): Promise<void> {
  const inner = new AbortController();
  const onAbort = () => inner.abort(signal.reason);
  if (signal.aborted) onAbort();
  else signal.addEventListener("abort", onAbort, { once: true });
  let next = 0;
  let failure: { error: unknown } | undefined;
  const worker = async () => {
    while (!failure && next < items.length) {
      const item = items[next++]!;
      try {
        inner.signal.throwIfAborted();
        await fn(item, inner.signal);
      } catch (error) {
        if (!failure) {
          failure = { error };
          inner.abort(error);
        }
      }
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
  } finally {
    signal.removeEventListener("abort", onAbort);
  }
  if (failure) throw failure.error;
}

/** Rejects as soon as `signal` aborts, even if `promise` never settles. */
export function raceAbort<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener("abort", onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener("abort", onAbort);
        reject(error);
      },
    );
  });
}

/** Serializes work per key (one app's pointers, order file and removals) within this process. */
export class KeyedMutex {
  private readonly tails = new Map<string, Promise<void>>();

  async run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.tails.get(key) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((resolve) => {
      release = resolve;
    });
    const tail = previous.then(() => mine);
    this.tails.set(key, tail);
    await previous;
    try {
      return await fn();
    } finally {
      release();
      if (this.tails.get(key) === tail) this.tails.delete(key);
    }
  }
}
