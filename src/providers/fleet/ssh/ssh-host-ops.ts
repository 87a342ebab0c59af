import { randomBytes } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { TurnoutError } from "../../../domain/errors.js";
import {
  type AppTarget,
  appTarget,
  type HealthCheckConfig,
  type HostAppInventory,
  type SshHostConfig,
  targetApp,
  targetPath,
} from "../../../domain/fleet.js";
import type { BlobSource, HostLog, HostOps, StageResult, StageSpec } from "../host-ops.js";
import type { BaseManifestSource } from "../manifest-diffs.js";
import { writeBlobTar } from "./blob-tar.js";
import { type ChosenBase, chooseBase, type OfferedBase, specListing } from "./listing-bases.js";
import { listingMissingInput } from "./release-listing.js";
import { ANSWER_BEGINS, type RemoteOp } from "./remote-script.js";
import { type ExecOptions, type ExecResult, type SshClientOptions, SshConnection } from "./ssh-connection.js";
import {
  assertAppName,
  assertDeployPathFor,
  assertReleaseId,
  assertSlotName,
  checkArgv,
  checkEnv,
  checkHealthUrl,
  checkHostConfig,
  planForHost,
  timeoutSeconds,
} from "./ssh-validate.js";
import { commandInput, neededBlobs, stageInput } from "./stage-input.js";
import { patchTree, type StageTree, wholeTree } from "./stage-trees.js";

export interface SshHostOpsOptions extends SshClientOptions {
  /** Time limit of steps that run no user command (switch, prune, inventory, materializing). */
  opTimeoutMs?: number;
  /**
   * Manifests of stored artifacts: with it, a host that keeps the listing and
   * the stage tar of a release of the app is sent only the difference from
   * them (release-listing.ts, tar-patch.ts).
   */
  manifests?: BaseManifestSource;
}

/** How much longer than the host's own `timeout` the local ssh may take: the host reports first. */
const LOCAL_GRACE_MS = 20_000;
const CANCEL_TIMEOUT_MS = 15_000;
/** Slowest link we wait for while sending blobs, on top of opTimeoutMs. */
const MIN_BYTES_PER_SECOND = 256 * 1024;
/** Exit codes for outcomes without one, as the agent reports them. */
const EXIT_TIMEOUT = 124;
const EXIT_ABORTED = 130;

/**
 * HostOps over SSH: the same layout and the same behaviour as an agent's
 * LocalHostOps (same release plan, cache, pointers, order file, environment
 * of commands, log lines), carried out by one constant remote script
 * (remote-script.ts). Every name, id and path is checked here before ssh
 * starts, and again on the host. Commands run on the host under `timeout`;
 * an abort stops the local ssh and, through a second session, the job on
 * the host (its pid is recorded under <root>/.turnout/jobs/).
 */
export class SshHostOps implements HostOps {
  readonly name: string;
  private readonly host: SshHostConfig;
  private readonly connection: SshConnection;
  private readonly opTimeoutMs: number;
  private readonly manifests: BaseManifestSource | undefined;
  private ready: Promise<void> | null = null;

  constructor(host: SshHostConfig, options: SshHostOpsOptions = {}) {
    this.host = checkHostConfig(host);
    this.name = host.name;
    this.connection = new SshConnection(this.host, options);
    this.opTimeoutMs = options.opTimeoutMs ?? 120_000;
    this.manifests = options.manifests;
  }

  async stage(spec: StageSpec, blobs: BlobSource, log: HostLog, signal: AbortSignal): Promise<StageResult> {
    // Everything is checked before ssh starts.
    const place = this.place(appTarget(spec.app, spec.path));
    const app = place[0];
    const id = assertReleaseId(spec.releaseId);
    const plan = planForHost(spec.manifest, spec.shared ?? []);
    const hook = spec.beforeSwitch === undefined ? null : checkArgv(spec.beforeSwitch, "before_switch");
    const env = checkEnv(spec.env);
    const hookSeconds = timeoutSeconds(spec.timeoutMs);
    signal.throwIfAborted();
    try {
      await this.connect();
      const needed = neededBlobs(plan);
      const { listing, artifact } = specListing(spec, plan);
      const keptTars = new Set<string>();
      let base = artifact ? await this.baseFor(spec, place, keptTars, signal) : undefined;
      // The patch of the tree is made while the host answers `missing` and receives the blobs.
      let patched = base ? patchTree(spec, plan, base, keptTars) : undefined;
      patched?.catch(() => undefined);
      const ask = (from: ChosenBase | undefined) =>
        this.call(
          "missing",
          [this.host.root, ...place, id, artifact ?? "-"],
          { input: listingMissingInput(plan, listing, from), timeoutMs: this.opTimeoutMs, signal },
          `staging ${app} ${id}`,
        );
      let asked = await ask(base);
      if (asked.last === "ok nobase") {
        // The kept listing went missing or is damaged since the host offered it.
        log(
          `staging ${id}: the host no longer keeps the listing of ${base?.artifact.slice(0, 16)}: sending the whole listing`,
        );
        base = undefined;
        patched = undefined;
        asked = await ask(undefined);
      }
      if (base)
        log(
          `staging ${id}: from release ${base.artifact.slice(0, 16)} (listing difference: ${base.removed} lines out, ${base.added} in)`,
        );
      const repairs = asked.lines.filter((line) => line.startsWith("repaired ")).map((line) => line.slice(9));
      // Damaged cache blobs (bytes that no longer match their digest) were removed: they are sent again.
      if (repairs.length > 0)
        log(
          `blob cache: ${repairs.length} damaged blobs removed (${repairs
            .slice(0, 5)
            .map((n) => n.slice(0, 12))
            .join(", ")})`,
        );
      if (asked.last === "ok exists") {
        log(`release ${id} is already staged`);
        return { staged: false, blobsFetched: 0, bytesFetched: 0 };
      }
      const damage = asked.lines.filter((line) => line.startsWith("damaged ")).map((line) => line.slice(8));
      const missing = asked.lines
        .filter((line) => !line.startsWith("damaged ") && !line.startsWith("repaired "))
        .map((line) => {
          const name = line.slice("missing ".length);
          const blob = needed.get(name);
          if (!line.startsWith("missing ") || !blob) {
            throw new TurnoutError(
              "E_UNAVAILABLE",
              `host ${this.name} answered oddly: ${JSON.stringify(line)}`,
            );
          }
          return { ...blob, name };
        });
      // A release there but not whole (deleted or changed by hand): staged again, it takes the name.
      if (damage.length > 0)
        log(`release ${id} is damaged on this host (${damage.join("; ")}): staging it again`);
      // Counted per digest, as agents count them (a (digest, mode) sibling travels as its own copy).
      const digests = new Map(missing.map((blob) => [blob.sha256, blob.size]));
      const total = [...digests.values()].reduce((sum, size) => sum + size, 0);
      const blobCount = new Set([...needed.values()].map((blob) => blob.sha256)).size;
      log(
        `staging ${id}: ${plan.files.length} files, fetching ${digests.size} of ${blobCount} blobs (${total} bytes)`,
      );
      const wire = missing.reduce((sum, blob) => sum + blob.size, 0);

      let bytesFetched = 0;
      if (missing.length > 0) {
        await this.call(
          "receive",
          [this.host.root, nonce()],
          {
            input: async (stdin) => {
              await writeBlobTar(stdin, missing, blobs, signal);
            },
            timeoutMs: this.opTimeoutMs + (wire / MIN_BYTES_PER_SECOND) * 1000,
            signal,
          },
          `sending blobs of ${app} ${id}`,
        );
        bytesFetched = total;
      }

      if (plan.dropped > 0) log(`staging ${id}: ${plan.dropped} entries replaced by links to shared/`);
      if (hook) log(`before_switch: ${JSON.stringify(hook)}`);
      // A host that keeps the base's stage tar is sent a patch of it, else the whole tree.
      let tree = await patched;
      if (tree?.patch)
        log(
          `staging ${id}: the tree as a patch of release ${tree.base.artifact.slice(0, 16)}'s (${tree.patch.ranges.length} ranges, ${tree.patch.literal.length} bytes new)`,
        );
      const stageOnce = async (sent: StageTree) => {
        const job = nonce();
        const input = stageInput(plan, hook, env, sent, artifact);
        return this.withCancel(job, signal, () =>
          this.call(
            "stage",
            [this.host.root, ...place, id, String(hookSeconds), job, damage.length > 0 ? "replace" : "new"],
            {
              input,
              onStderrLine: log,
              timeoutMs: this.opTimeoutMs + (hook ? spec.timeoutMs + LOCAL_GRACE_MS : 0),
              signal,
            },
            `staging ${app} ${id}`,
          ),
        );
      };
      let staged = await stageOnce(tree ?? (await wholeTree(spec, plan)));
      // The host said why (its log line): its kept tar is gone or damaged, or the patch did not add up.
      if (staged.last === "ok fallback") {
        tree = undefined;
        staged = await stageOnce(await wholeTree(spec, plan));
      }
      const how = tree?.patch ? { manifest: "diff" as const } : {};
      if (staged.last === "ok staged") log(`staged ${id}`);
      if (staged.last === "ok replaced") {
        log(`staged ${id} again: repaired`);
        return { staged: true, blobsFetched: digests.size, bytesFetched, repaired: true, ...how };
      }
      return { staged: staged.last === "ok staged", blobsFetched: digests.size, bytesFetched, ...how };
    } catch (error) {
      // Aborted: say so the way an agent does, whatever the connection made of it.
      if (signal.aborted) throw signal.reason ?? error;
      throw error;
    }
  }

  /**
   * The cheap first question: which listings the host keeps for releases of
   * this app it still has (current first), and which stage tars (the first
   * digits of their digests go into `keptTars`). Only with manifests to diff from.
   */
  private async baseFor(
    spec: StageSpec,
    place: [string, string],
    keptTars: Set<string>,
    signal: AbortSignal,
  ): Promise<ChosenBase | undefined> {
    if (!this.manifests) return undefined;
    const { lines } = await this.call(
      "bases",
      [this.host.root, ...place],
      { timeoutMs: this.opTimeoutMs, signal },
      `asking ${place[0]}'s kept listings`,
    );
    const offered: OfferedBase[] = [];
    for (const line of lines) {
      const tar = /^tar ([0-9a-f]{16})$/.exec(line);
      if (tar) {
        keptTars.add(tar[1]!);
        continue;
      }
      const match = /^base ([0-9a-f]{64}) ([0-9a-f]{64})$/.exec(line);
      if (!match)
        throw new TurnoutError("E_UNAVAILABLE", `host ${this.name} answered oddly: ${JSON.stringify(line)}`);
      offered.push({ artifact: match[1]!, digest: match[2]! });
    }
    return chooseBase(spec, offered, this.manifests);
  }

  async switchTo(target: AppTarget, releaseId: string, slot: string): Promise<{ previous: string | null }> {
    const place = this.place(target);
    assertReleaseId(releaseId);
    if (slot !== "current") assertSlotName(slot);
    const { last } = await this.simple(
      "switch",
      [this.host.root, ...place, releaseId, slot, nonce()],
      `switching ${place[0]}`,
    );
    return { previous: releaseOrNull(last.replace(/^ok previous /, "")) };
  }

  async promoteSlot(target: AppTarget, slot: string): Promise<{ previous: string | null; current: string }> {
    const place = this.place(target);
    assertSlotName(slot);
    if (slot === "current") throw new TurnoutError("E_VALIDATION", "promote a slot, not current itself");
    const { last } = await this.simple(
      "promote",
      [this.host.root, ...place, slot, nonce()],
      `promoting ${place[0]}/${slot}`,
    );
    const [, , previous, current] = last.split(" ");
    return { previous: releaseOrNull(previous ?? "-"), current: assertReleaseId(current ?? "") };
  }

  async run(
    app: AppTarget,
    argv: string[],
    env: Record<string, string>,
    timeoutMs: number,
    log: HostLog,
    signal: AbortSignal,
  ): Promise<number> {
    this.place(app);
    const command = checkArgv(argv, "command");
    const vars = checkEnv(env);
    timeoutSeconds(timeoutMs);
    const result = await this.runJob(app, command, vars, timeoutMs, "any", log, signal);
    // "any" runs in the app directory when there is no current release: never "nocurrent".
    return typeof result === "number" ? result : 1;
  }

  /**
   * One try, then `retries` more, `intervalMs` apart, each within
   * `timeoutMs`; http: a GET from the host answered 2xx (redirects not
   * followed), command: exit 0 in the current release. An abort is unhealthy.
   */
  async health(
    app: AppTarget,
    check: HealthCheckConfig,
    log: HostLog,
    signal: AbortSignal,
  ): Promise<boolean> {
    this.place(app);
    if ((check.http === undefined) === (check.command === undefined)) {
      throw new TurnoutError("E_VALIDATION", "a health check needs exactly one of http or command");
    }
    const url = check.http === undefined ? undefined : checkHealthUrl(check.http);
    const argv = check.command === undefined ? undefined : checkArgv(check.command, "health command");
    timeoutSeconds(check.timeoutMs);
    const tries = Math.max(0, Math.floor(check.retries ?? 0)) + 1;
    for (let attempt = 1; attempt <= tries; attempt++) {
      if (signal.aborted) {
        log("health: aborted");
        return false;
      }
      const problem = url
        ? await this.httpTry(url, check.timeoutMs, signal)
        : await this.commandTry(app, argv!, check.timeoutMs, log, signal);
      if (problem === undefined) {
        if (attempt > 1) log(`health: healthy on try ${attempt}/${tries}`);
        return true;
      }
      log(`health: try ${attempt}/${tries} failed: ${problem}`);
      if (attempt < tries) {
        try {
          await sleep(Math.max(0, check.intervalMs ?? 0), undefined, { signal });
        } catch {
          log("health: aborted");
          return false;
        }
      }
    }
    return false;
  }

  async prune(target: AppTarget, keep: number): Promise<{ removed: string[] }> {
    const place = this.place(target);
    if (!Number.isInteger(keep) || keep < 0 || keep > 9_999_999) {
      throw new TurnoutError("E_VALIDATION", `keep must be a whole number of releases, got ${keep}`);
    }
    const { lines } = await this.simple(
      "prune",
      [this.host.root, ...place, String(keep)],
      `pruning ${place[0]}`,
    );
    return { removed: lines.map((line) => assertReleaseId(line.replace(/^removed /, ""))) };
  }

  async inventory(): Promise<HostAppInventory[]> {
    const { lines } = await this.simple("inventory", [this.host.root], "inventory");
    const apps: HostAppInventory[] = [];
    for (const line of lines) {
      const [kind, a, b] = line.split(" ");
      const current = apps.at(-1);
      if (kind === "app" && a)
        apps.push({
          app: assertAppName(a),
          ...(b ? { path: assertDeployPathFor(b, this.host.root) } : {}),
          releases: [],
          current: null,
          slots: {},
        });
      else if (kind === "release" && a && current) current.releases.push(assertReleaseId(a));
      else if (kind === "current" && a && current) current.current = assertReleaseId(a);
      else if (kind === "slot" && a && b && current) current.slots[assertSlotName(a)] = assertReleaseId(b);
      else
        throw new TurnoutError("E_UNAVAILABLE", `host ${this.name} answered oddly: ${JSON.stringify(line)}`);
    }
    return apps.sort((x, y) =>
      x.app !== y.app ? (x.app < y.app ? -1 : 1) : (x.path ?? "") < (y.path ?? "") ? -1 : 1,
    );
  }

  /**
   * The app and its deploy path as the script's two arguments ("-": <root>/<app>), both checked:
   * a path reaches the host as one argv element on the command line, never as shell text.
   */
  private place(target: AppTarget): [string, string] {
    const app = assertAppName(targetApp(target));
    const path = targetPath(target);
    return [app, path === undefined ? "-" : assertDeployPathFor(path, this.host.root)];
  }

  /** Ends the shared SSH connection. The object stays usable: the next operation connects again. */
  async close(): Promise<void> {
    this.ready = null;
    await this.connection.close();
  }

  private async httpTry(url: string, timeoutMs: number, signal: AbortSignal): Promise<string | undefined> {
    try {
      const { last, result } = await this.call(
        "http",
        [String(timeoutSeconds(timeoutMs))],
        { input: `U ${url}\nEND\n`, timeoutMs: timeoutMs + LOCAL_GRACE_MS, signal },
        "health check",
      );
      return last === "ok status 0" ? undefined : lastLine(result.stderr) || "the request failed";
    } catch (error) {
      return signal.aborted ? "aborted" : (error as Error).message;
    }
  }

  private async commandTry(
    app: AppTarget,
    argv: string[],
    timeoutMs: number,
    log: HostLog,
    signal: AbortSignal,
  ): Promise<string | undefined> {
    try {
      const code = await this.runJob(app, argv, {}, timeoutMs, "current", log, signal, "health");
      if (code === "nocurrent") return "the app has no current release";
      return code === 0 ? undefined : `exit code ${code}`;
    } catch (error) {
      return signal.aborted ? "aborted" : (error as Error).message;
    }
  }

  /** argv on the host, in the current release; its exit code (124 timed out, 130 aborted). */
  private async runJob(
    app: AppTarget,
    argv: string[],
    env: Record<string, string>,
    timeoutMs: number,
    mode: "any" | "current",
    log: HostLog,
    signal: AbortSignal,
    label = argv[0]!,
  ): Promise<number | "nocurrent"> {
    if (signal.aborted) {
      log(`${label}: aborted`);
      return EXIT_ABORTED;
    }
    const job = nonce();
    try {
      await this.connect();
      const { last } = await this.withCancel(job, signal, () =>
        this.call(
          "run",
          [this.host.root, ...this.place(app), String(timeoutSeconds(timeoutMs)), job, mode],
          {
            input: commandInput(argv, env),
            onStderrLine: log,
            timeoutMs: timeoutMs + LOCAL_GRACE_MS,
            signal,
          },
          `running ${label} for ${targetApp(app)}`,
        ),
      );
      if (last === "ok nocurrent") return "nocurrent";
      const code = exitStatus(last);
      if (code === EXIT_TIMEOUT) log(`${label}: timed out after ${timeoutMs} ms, stopped`);
      return code;
    } catch (error) {
      if (!signal.aborted) throw error;
      log(`${label}: aborted`);
      return EXIT_ABORTED;
    }
  }

  /**
   * The first operation opens the shared connection alone (concurrent first
   * calls would each open their own) and checks the tools the script needs.
   */
  private connect(): Promise<void> {
    // Not the caller's signal: others may be waiting on the same connection.
    this.ready ??= this.call("hello", [], { timeoutMs: 60_000 }, "connecting").then(
      () => undefined,
      (error: unknown) => {
        this.ready = null;
        throw error;
      },
    );
    return this.ready;
  }

  private async simple(op: RemoteOp, args: string[], what: string) {
    await this.connect();
    return this.call(op, args, { timeoutMs: this.opTimeoutMs }, what);
  }

  /**
   * Runs one operation; success is an exit status of 0 and an `ok` line
   * last, so output cut short never passes for a result.
   */
  private async call(
    op: RemoteOp,
    args: string[],
    options: ExecOptions,
    what: string,
  ): Promise<{ lines: string[]; last: string; result: ExecResult }> {
    const result = await this.connection.exec(op, args, options);
    const all = result.stdout.split("\n");
    const begin = all.indexOf(ANSWER_BEGINS);
    const lines = begin === -1 ? [] : all.slice(begin + 1).filter((line) => line !== "");
    const last = lines.at(-1) ?? "";
    if (result.exitCode === 0 && !result.stopped && last.startsWith("ok")) {
      return { lines: lines.slice(0, -1), last, result };
    }
    if (result.exitCode === 0 && !result.stopped) {
      throw new TurnoutError("E_UNAVAILABLE", `${what} on ${this.name}: the host gave no complete answer`);
    }
    throw this.connection.failure(result, what);
  }

  /** On abort, also stop the job on the host: its ssh session ending would not. */
  private async withCancel<T>(job: string, signal: AbortSignal, work: () => Promise<T>): Promise<T> {
    let cancelled: Promise<unknown> | undefined;
    const onAbort = () => {
      cancelled = this.connection
        .exec("cancel", [this.host.root, job], { timeoutMs: CANCEL_TIMEOUT_MS })
        .catch(() => undefined);
    };
    signal.addEventListener("abort", onAbort, { once: true });
    try {
      return await work();
    } finally {
      signal.removeEventListener("abort", onAbort);
      await cancelled;
    }
  }
}

function nonce(): string {
  return randomBytes(8).toString("hex");
}

function releaseOrNull(value: string): string | null {
  return value === "-" ? null : assertReleaseId(value);
}

function exitStatus(last: string): number {
  const match = /^ok status ([0-9]{1,3})$/.exec(last);
  if (!match) throw new TurnoutError("E_UNAVAILABLE", `unexpected answer from host: ${JSON.stringify(last)}`);
  return Number(match[1]);
}

function lastLine(text: string): string {
  return (
    text
      .split("\n")
      .filter((line) => line.trim() !== "")
      .at(-1)
      ?.trim() ?? ""
  );
}
