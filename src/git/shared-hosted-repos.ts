import { readFile, rename, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { isTurnoutError, TurnoutError } from "../domain/errors.js";
import type {
  HostedLogEntry,
  HostedLogHead,
  HostedLogReader,
  HostedRepoLog,
  LockedHostedLog,
} from "../store/hosted-repo-log.js";
import { applyBundle, createBundle, createFullBundle, setRefs } from "./hosted-bundles.js";
import { ensureHostedRepo, readRefs } from "./hosted-repos.js";

/**
 * Hosted repositories shared by every server of one PostgreSQL database.
 *
 * Each server keeps its own bare copy under `<dataDir>/hosted`; the shared
 * truth is the repository's log in the database (store/hosted-repo-log.ts):
 * per accepted push, every ref after it and a bundle of the objects it added.
 *
 * - A push runs holding the repository's row lock: the copy first catches
 *   up, then `git receive-pack` runs, then the new refs and a bundle of the
 *   new objects are appended to the log, in the same transaction. The client
 *   hears of success only after that commit (the route holds git's answer),
 *   so an acknowledged push is on every server's reach; if the commit fails,
 *   the copy's refs go back to what they were and the client sees an error.
 *   Pushes to one repository through two servers are thereby serialised; the
 *   second is judged by git against the first's refs, exactly as if both had
 *   come to one server (a stale old value is rejected, a non-fast-forward
 *   needs --force as always).
 * - Before anything reads a copy (the engine's fetch into its mirror, a
 *   clone or fetch served to a client), it catches up: bundles after the
 *   copy's last entry are unbundled in order, then the refs are set to the
 *   log's last entry in one update-ref transaction, which is how force pushes
 *   and deletions propagate. Catching up is idempotent: a crash halfway is
 *   repaired by the next one.
 * - Compaction: when the log holds more than `compactAfter` entries, the
 *   head entry's bundle becomes one of everything and the older entries go.
 *
 * The copy remembers which log and entry it reflects in `turnout-shared.json`
 * inside the bare repository (git ignores files it does not know).
 */
export interface SharedHostedReposOptions {
  log: Pick<HostedRepoLog, "head" | "entries" | "bundle" | "size" | "locked">;
  /** `<dataDir>/hosted`: only repositories under it are shared. */
  hostedDir: string;
  report(message: string): void;
  /** How long a push waits for another server's push to the same repository (default 2 minutes). */
  lockWaitMs?: number;
  /** Entries the log may hold before it is compacted (default 50). */
  compactAfter?: number;
}

/** What a push's answer is held as until the log has it. */
export interface PushOutcome {
  /** The refs after the push differ from before: the log got an entry. */
  published: boolean;
  seq: number | undefined;
}

interface CopyState {
  logId: string;
  seq: number;
}

const STATE_FILE = "turnout-shared.json";
// Of the pool's 10 connections (store/database.ts).
const MAX_HOLDING = 3;

export class SharedHostedRepos {
  private readonly hostedDir: string;
  private readonly lockWaitMs: number;
  private readonly compactAfter: number;
  // One catch-up or push at a time per copy in this process (others wait their turn).
  private readonly turns = new Map<string, Promise<unknown>>();
  // A push holds a database connection while git runs: a few at a time, so
  // pushes to many repositories never take every connection of the pool.
  private holding = 0;
  private readonly queued: (() => void)[] = [];

  constructor(private readonly options: SharedHostedReposOptions) {
    this.hostedDir = path.resolve(options.hostedDir);
    this.lockWaitMs = options.lockWaitMs ?? 120_000;
    this.compactAfter = Math.max(1, options.compactAfter ?? 50);
  }

  /** The log's name of a copy (`shop`, `shop/web`), or undefined for a path outside `hosted/`. */
  keyOf(repoPath: string): string | undefined {
    const relative = path.relative(this.hostedDir, path.resolve(repoPath));
    if (relative.startsWith("..") || path.isAbsolute(relative) || !relative.endsWith(".git"))
      return undefined;
    return relative.slice(0, -".git".length).split(path.sep).join("/");
  }

  /** Brings the copy at `repoPath` up to the log (a no-op for repositories that are not hosted). */
  async catchUp(repoPath: string): Promise<void> {
    const key = this.keyOf(repoPath);
    if (key === undefined) return;
    await ensureHostedRepo(repoPath);
    const head = await this.options.log.head(key);
    // The common case costs one indexed read and no git process.
    if (head && head.head > 0 && isCurrent(await readState(repoPath), head)) return;
    await this.turn(repoPath, async () => {
      const seeded = await this.catchUpNow(repoPath, key, await this.options.log.head(key), this.options.log);
      if (seeded) await this.seed(repoPath, key);
    });
  }

  /**
   * Runs `receive` (git receive-pack on the copy) as one push of the shared
   * repository: see the class comment. Throws, with the copy's refs as they
   * were, when the push cannot be recorded; `receive`'s own failures are
   * git's business and are recorded as whatever they left in the copy.
   */
  async push<T>(repoPath: string, pushedBy: string, receive: () => Promise<T>): Promise<T> {
    const key = this.keyOf(repoPath);
    if (key === undefined) return receive();
    await ensureHostedRepo(repoPath);
    return this.turn(repoPath, async () => {
      let before: Map<string, string> | undefined;
      let published: CopyState | undefined;
      let committed = false;
      try {
        const result = await this.holdingConnection(() =>
          this.options.log.locked(key, this.lockWaitMs, async (locked) => {
            // Under the lock nobody appends: this brings the copy to the head we hold.
            await this.catchUpNow(repoPath, key, { logId: locked.logId, head: locked.head }, locked);
            before = await readRefs(repoPath);
            const outcome = await receive();
            const after = await readRefs(repoPath);
            const changed = [...after].filter(([ref, id]) => before!.get(ref) !== id).map(([ref]) => ref);
            if (changed.length === 0 && [...before.keys()].every((ref) => after.has(ref))) return outcome;
            // The first entry must stand alone: a copy that had refs before the log began gives all of them.
            const first = locked.head === 0;
            const bundle = await createBundle(
              repoPath,
              first ? [...after.keys()] : changed,
              first ? [] : [...new Set(before.values())],
            );
            const seq = await locked.append({
              refs: Object.fromEntries(after),
              bundle,
              full: first,
              pushedBy,
            });
            published = { logId: locked.logId, seq };
            return outcome;
          }),
        );
        committed = true;
        if (published) {
          // Not writing it only means the next catch-up applies this push again, which changes nothing.
          await writeState(repoPath, published).catch((error: unknown) =>
            this.options.report(
              `hosted: ${key}: could not note the copy's place in the log: ${messageOf(error)}`,
            ),
          );
          void this.compactIfDue(repoPath, key);
        }
        return result;
      } catch (error) {
        if (before && !committed) await this.restore(repoPath, before);
        throw error;
      }
    });
  }

  /**
   * The log's copy state → the copy: returns true when the log is empty and
   * the copy might have something to seed it with.
   */
  private async catchUpNow(
    repoPath: string,
    key: string,
    head: HostedLogHead | undefined,
    reader: HostedLogReader,
  ): Promise<boolean> {
    if (!head || head.head === 0) return true;
    for (let attempt = 0; attempt < 3; attempt++) {
      const state = await readState(repoPath);
      if (isCurrent(state, head)) return false;
      const from = state?.logId === head.logId ? state.seq : 0;
      const entries = (await reader.entries(key, from)).filter((e) => e.seq <= head.head);
      if (entries.length === 0) return false;
      const start = startOf(entries, from, key);
      let complete = true;
      for (const entry of entries.slice(start)) {
        if (entry.bytes === 0) continue;
        const bundle = await reader.bundle(key, entry.seq);
        // Compacted while we read: start again from the new first entry.
        if (bundle === undefined) {
          complete = false;
          break;
        }
        if (bundle) await applyBundle(repoPath, bundle);
      }
      if (!complete) continue;
      const last = entries[entries.length - 1]!;
      await setRefs(repoPath, last.refs);
      await writeState(repoPath, { logId: head.logId, seq: last.seq });
      const applied = entries.length - start;
      this.options.report(
        `hosted: ${key}: caught up to push #${last.seq} (${applied} ${applied === 1 ? "entry" : "entries"} of the shared log applied)`,
      );
      return false;
    }
    throw new TurnoutError(
      "E_GIT",
      `could not bring the hosted repository ${key} up to date: its log kept changing`,
    );
  }

  /**
   * The log is empty but this copy has refs (it was filled before the servers
   * shared a database): it becomes the log's first entry, unless another
   * server's push or seed came first.
   */
  private async seed(repoPath: string, key: string): Promise<void> {
    const refs = await readRefs(repoPath);
    if (refs.size === 0) return;
    let published: CopyState | undefined;
    await this.options.log.locked(key, this.lockWaitMs, async (locked) => {
      if (locked.head !== 0) return;
      const bundle = await createFullBundle(repoPath);
      const seq = await locked.append({
        refs: Object.fromEntries(refs),
        bundle,
        full: true,
        pushedBy: "turnout (existing copy)",
      });
      published = { logId: locked.logId, seq };
    });
    if (published) {
      await writeState(repoPath, published);
      this.options.report(`hosted: ${key}: this server's copy started the shared log`);
    } else {
      await this.catchUpNow(repoPath, key, await this.options.log.head(key), this.options.log);
    }
  }

  private async compactIfDue(repoPath: string, key: string): Promise<void> {
    try {
      const { entries } = await this.options.log.size(key);
      if (entries <= this.compactAfter) return;
      await this.turn(repoPath, () =>
        this.holdingConnection(() =>
          this.options.log.locked(key, this.lockWaitMs, async (locked: LockedHostedLog) => {
            await this.catchUpNow(repoPath, key, { logId: locked.logId, head: locked.head }, locked);
            const full = await createFullBundle(repoPath);
            if (!full) return;
            const removed = await locked.compact(full);
            this.options.report(
              `hosted: ${key}: compacted the shared log to one bundle of ${full.length} bytes (${removed} older entries removed)`,
            );
          }),
        ),
      );
    } catch (error) {
      this.options.report(`hosted: ${key}: compacting the shared log failed: ${messageOf(error)}`);
    }
  }

  /** A push that could not be recorded leaves the copy as the log knows it. */
  private async restore(repoPath: string, before: Map<string, string>): Promise<void> {
    try {
      await setRefs(repoPath, Object.fromEntries(before));
    } catch (error) {
      // The next catch-up rebuilds the refs from the log's first entry.
      this.options.report(`hosted: could not put back the refs of ${repoPath}: ${messageOf(error)}`);
      await rm(path.join(repoPath, STATE_FILE), { force: true }).catch(() => undefined);
    }
  }

  private async holdingConnection<T>(fn: () => Promise<T>): Promise<T> {
    if (this.holding >= MAX_HOLDING) await new Promise<void>((resolve) => this.queued.push(resolve));
    this.holding++;
    try {
      return await fn();
    } finally {
      this.holding--;
      this.queued.shift()?.();
    }
  }

  private turn<T>(repoPath: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.turns.get(repoPath) ?? Promise.resolve();
    const mine = previous.then(fn, fn);
    const settled = mine.then(
      () => undefined,
      () => undefined,
    );
    this.turns.set(repoPath, settled);
    void settled.then(() => {
      if (this.turns.get(repoPath) === settled) this.turns.delete(repoPath);
    });
    return mine;
  }
}

/** Where applying starts: the last full entry, or the one right after the copy's. */
function startOf(entries: HostedLogEntry[], from: number, key: string): number {
  for (let i = entries.length - 1; i >= 0; i--) if (entries[i]!.full) return i;
  if (entries[0]!.seq === from + 1) return 0;
  throw new TurnoutError(
    "E_GIT",
    `the shared log of the hosted repository ${key} misses entries ${from + 1}-${entries[0]!.seq - 1}`,
  );
}

function isCurrent(state: CopyState | undefined, head: HostedLogHead): boolean {
  return state !== undefined && state.logId === head.logId && state.seq >= head.head;
}

async function readState(repoPath: string): Promise<CopyState | undefined> {
  try {
    const parsed = JSON.parse(await readFile(path.join(repoPath, STATE_FILE), "utf8")) as Partial<CopyState>;
    if (typeof parsed.logId === "string" && Number.isInteger(parsed.seq)) {
      return { logId: parsed.logId, seq: parsed.seq! };
    }
  } catch {
    // absent or unreadable: the copy is caught up from the log's start
  }
  return undefined;
}

async function writeState(repoPath: string, state: CopyState): Promise<void> {
  const file = path.join(repoPath, STATE_FILE);
  const temp = `${file}.${process.pid}.tmp`;
  await writeFile(temp, `${JSON.stringify(state)}\n`, { mode: 0o600 });
  await rename(temp, file);
}

function messageOf(error: unknown): string {
  return isTurnoutError(error) || error instanceof Error ? error.message : String(error);
}
