import { randomBytes } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { TurnoutError } from "../../../domain/errors.js";
import type { HealthCheckConfig, HostAppInventory, SshHostConfig } from "../../../domain/fleet.js";
import type { BlobSource, HostLog, HostOps, StageResult, StageSpec } from "../host-ops.js";
import { writeBlobTar } from "./blob-tar.js";
import type { RemoteOp } from "./remote-script.js";
import { type ExecOptions, type SshClientOptions, SshConnection } from "./ssh-connection.js";
import {
  assertAppName,
  assertReleaseId,
  assertSlotName,
  checkArgv,
  checkEnv,
  checkHealthUrl,
  checkHostConfig,
  checkManifest,
  checkSharedPaths,
  timeoutSeconds,
} from "./ssh-validate.js";
import { blobListInput, commandInput, stageInput } from "./stage-input.js";

export interface SshHostOpsOptions extends SshClientOptions {
  /** Time limit of operations that run no user command (switch, prune, inventory…). */
  opTimeoutMs?: number;
}

/** How much longer than the host's own `timeout` the local ssh may take: the host reports first. */
const LOCAL_GRACE_MS = 20_000;
const CANCEL_TIMEOUT_MS = 15_000;

/**
 * HostOps over SSH: the same layout and the same operations as an agent's
 * host, carried out by one constant remote script (remote-script.ts). Every
 * name, id and path is checked here before ssh starts, and again on the host.
 * Commands (before_switch, restart, health) run on the host under `timeout`;
 * aborting stops the local ssh and, through a second connection, the remote
 * job (its pid is recorded under <root>/.turnout/jobs/<nonce>).
 */
export class SshHostOps implements HostOps {
  readonly name: string;
  private readonly host: SshHostConfig;
  private readonly connection: SshConnection;
  private readonly opTimeoutMs: number;
  private ready: Promise<void> | null = null;

  constructor(host: SshHostConfig, options: SshHostOpsOptions = {}) {
    this.host = checkHostConfig(host);
    this.name = host.name;
    this.connection = new SshConnection(this.host, options);
    this.opTimeoutMs = options.opTimeoutMs ?? 120_000;
  }

  async stage(spec: StageSpec, blobs: BlobSource, log: HostLog, signal: AbortSignal): Promise<StageResult> {
    const app = assertAppName(spec.app);
    const id = assertReleaseId(spec.releaseId);
    const manifest = checkManifest(spec.manifest);
    const shared = checkSharedPaths(spec.shared);
    const hook = spec.beforeSwitch ? checkArgv(spec.beforeSwitch, "before_switch") : null;
    const env = checkEnv(spec.env);
    timeoutSeconds(spec.timeoutMs);
    signal.throwIfAborted();
    const deadline = Date.now() + spec.timeoutMs;
    const remaining = () => Math.max(1000, deadline - Date.now());
    await this.connect(signal);

    const sizes = new Map<string, number>();
    for (const entry of manifest.entries) if (entry.type === "file") sizes.set(entry.sha256, entry.size);
    const asked = await this.call(
      "missing",
      [this.host.root, app, id],
      { input: blobListInput(sizes.keys()), timeoutMs: remaining(), signal },
      `staging ${app} ${id}`,
    );
    if (asked.last === "ok exists") return { staged: false, blobsFetched: 0, bytesFetched: 0 };
    const missing = asked.lines.map((line) => {
      const sha = line.slice("missing ".length);
      if (!line.startsWith("missing ") || !sizes.has(sha)) {
        throw new TurnoutError("E_UNAVAILABLE", `host ${this.name} answered oddly: ${JSON.stringify(line)}`);
      }
      return { sha256: sha, size: sizes.get(sha)! };
    });

    let bytesFetched = 0;
    if (missing.length > 0) {
      const total = missing.reduce((sum, b) => sum + b.size, 0);
      log(`${this.name}: sending ${missing.length} of ${sizes.size} blobs (${total} bytes)`);
      await this.call(
        "receive",
        [this.host.root, nonce()],
        {
          input: async (stdin) => {
            bytesFetched = await writeBlobTar(stdin, missing, blobs, signal);
          },
          timeoutMs: remaining(),
          signal,
        },
        `sending blobs of ${app} ${id}`,
      );
    }

    const job = nonce();
    const staged = await this.withCancel(job, signal, () =>
      this.call(
        "stage",
        [this.host.root, app, id, String(timeoutSeconds(remaining())), job],
        {
          input: stageInput(manifest, shared, hook, env),
          onStderrLine: log,
          timeoutMs: remaining() + LOCAL_GRACE_MS,
          signal,
        },
        `staging ${app} ${id}`,
      ),
    );
    return { staged: staged.last === "ok staged", blobsFetched: missing.length, bytesFetched };
  }

  async switchTo(app: string, releaseId: string, slot: string): Promise<{ previous: string | null }> {
    assertAppName(app);
    assertReleaseId(releaseId);
    if (slot !== "current") assertSlotName(slot);
    const result = await this.simple(
      "switch",
      [this.host.root, app, releaseId, slot, nonce()],
      `switching ${app}`,
    );
    return { previous: releaseOrNull(result.last.replace(/^ok previous /, "")) };
  }

  async promoteSlot(app: string, slot: string): Promise<{ previous: string | null; current: string }> {
    assertAppName(app);
    assertSlotName(slot);
    const result = await this.simple(
      "promote",
      [this.host.root, app, slot, nonce()],
      `promoting slot ${slot} of ${app}`,
    );
    const [, , previous, current] = result.last.split(" ");
    return { previous: releaseOrNull(previous ?? "-"), current: assertReleaseId(current ?? "") };
  }

  async run(
    app: string,
    argv: string[],
    env: Record<string, string>,
    timeoutMs: number,
    log: HostLog,
    signal: AbortSignal,
  ): Promise<number> {
    assertAppName(app);
    const command = checkArgv(argv, "command");
    checkEnv(env);
    const seconds = timeoutSeconds(timeoutMs);
    signal.throwIfAborted();
    await this.connect(signal);
    const job = nonce();
    const result = await this.withCancel(job, signal, () =>
      this.call(
        "run",
        [this.host.root, app, String(seconds), job],
        {
          input: commandInput(command, env),
          onStderrLine: log,
          timeoutMs: timeoutMs + LOCAL_GRACE_MS,
          signal,
        },
        `running ${command[0]} for ${app}`,
      ),
    );
    const status = exitStatus(result.last);
    if (status === 124) log(`${this.name}: ${command[0]} timed out after ${seconds} s`);
    return status;
  }

  async health(app: string, check: HealthCheckConfig, log: HostLog, signal: AbortSignal): Promise<boolean> {
    assertAppName(app);
    const url = check.http !== undefined ? checkHealthUrl(check.http) : undefined;
    const command = check.command ? checkArgv(check.command, "health command") : undefined;
    if (!url && !command) return true;
    const seconds = timeoutSeconds(check.timeoutMs);
    const attempts = Math.max(1, Math.floor(check.retries) + 1);
    for (let attempt = 1; attempt <= attempts; attempt++) {
      signal.throwIfAborted();
      try {
        const status = url
          ? exitStatus(
              (
                await this.call(
                  "http",
                  [String(seconds)],
                  {
                    input: `U ${url}\nEND\n`,
                    onStderrLine: log,
                    timeoutMs: check.timeoutMs + LOCAL_GRACE_MS,
                    signal,
                  },
                  "health check",
                )
              ).last,
            )
          : await this.run(app, command!, {}, check.timeoutMs, log, signal);
        if (status === 0) return true;
        log(`${this.name}: health check ${attempt}/${attempts} failed (exit status ${status})`);
      } catch (error) {
        if (signal.aborted) throw error;
        log(`${this.name}: health check ${attempt}/${attempts} failed: ${(error as Error).message}`);
      }
      if (attempt < attempts) await sleep(check.intervalMs, undefined, { signal });
    }
    return false;
  }

  async prune(app: string, keep: number): Promise<{ removed: string[] }> {
    assertAppName(app);
    if (!Number.isInteger(keep) || keep < 0 || keep > 9_999_999) {
      throw new TurnoutError("E_VALIDATION", `invalid number of releases to keep: ${keep}`);
    }
    const result = await this.simple("prune", [this.host.root, app, String(keep)], `pruning ${app}`);
    return { removed: result.lines.map((line) => assertReleaseId(line.replace(/^removed /, ""))) };
  }

  async inventory(): Promise<HostAppInventory[]> {
    const result = await this.simple("inventory", [this.host.root], "inventory");
    const apps: HostAppInventory[] = [];
    for (const line of result.lines) {
      const [kind, a, b] = line.split(" ");
      const current = apps.at(-1);
      if (kind === "app" && a) apps.push({ app: assertAppName(a), releases: [], current: null, slots: {} });
      else if (kind === "release" && a && current) current.releases.push(assertReleaseId(a));
      else if (kind === "current" && a && current) current.current = assertReleaseId(a);
      else if (kind === "slot" && a && b && current) current.slots[assertSlotName(a)] = assertReleaseId(b);
      else
        throw new TurnoutError("E_UNAVAILABLE", `host ${this.name} answered oddly: ${JSON.stringify(line)}`);
    }
    return apps;
  }

  /** Ends the shared SSH connection. The object stays usable: the next operation connects again. */
  async close(): Promise<void> {
    this.ready = null;
    await this.connection.close();
  }

  /**
   * The first operation opens the shared connection alone (concurrent first
   * calls would each open their own) and checks the tools the script needs.
   */
  private connect(signal?: AbortSignal): Promise<void> {
    this.ready ??= this.call("hello", [], { timeoutMs: 60_000, signal }, "connecting").then(
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
  ): Promise<{ lines: string[]; last: string }> {
    const result = await this.connection.exec(op, args, options);
    const lines = result.stdout.split("\n").filter((line) => line !== "");
    const last = lines.at(-1) ?? "";
    if (result.exitCode !== 0 || result.stopped || !last.startsWith("ok")) {
      if (result.exitCode === 0 && !result.stopped) {
        throw new TurnoutError("E_UNAVAILABLE", `${what} on ${this.name}: the host gave no complete answer`);
      }
      throw this.connection.failure(result, what);
    }
    return { lines: lines.slice(0, -1), last };
  }

  /** On abort, also stop the job on the host (its ssh session alone would not end it). */
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
