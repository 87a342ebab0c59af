import { spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import type { Writable } from "node:stream";
import { MAX_LINE_PIECE, pieceEnd } from "../../../agent/host-layout/commands.js";
import { TurnoutError } from "../../../domain/errors.js";
import type { SshHostConfig } from "../../../domain/fleet.js";
import {
  EXIT_HOOK_FAILED,
  EXIT_NO_KEPT_SCRIPT,
  EXIT_NOT_FOUND,
  EXIT_REFUSED,
  EXIT_UNUSABLE,
  installScriptCommand,
  keptScriptCommand,
  REMOTE_SCRIPT,
  type RemoteOp,
  remoteCommand,
} from "./remote-script.js";

/**
 * One SSH host as a place to run the remote script. ssh always gets an argv
 * (never a shell), an empty configuration (`-F /dev/null`: nothing of the
 * server user's ~/.ssh/config applies), key authentication only, and the
 * host's pinned key: strict checking against its known_hosts file alone, no
 * global file, no learning or updating of keys. Operations share one
 * connection (ControlMaster) through a socket in a private directory.
 */
export interface SshClientOptions {
  /** The ssh program (tests pass a wrapper that records its invocations). */
  sshCommand?: string;
  connectTimeoutSeconds?: number;
  /** How long the shared connection outlives its last operation. */
  controlPersistSeconds?: number;
  /** Where the private directory of the control socket is made (default: the temp directory). */
  controlBase?: string;
  /**
   * Hosts known to hold this version of the script (remote-script.ts,
   * LAUNCHER), shared by every connection of a server so that only its first
   * deploy to a host asks. Without it, each connection asks once.
   */
  keptScripts?: KeptScripts;
}

/** Hosts (by keptScriptKey) known to hold the script; what is not known is asked. */
export type KeptScripts = Set<string>;

export interface ExecOptions {
  /** The script's stdin: text, or a writer that streams into it (and must end it). */
  input?: string | Buffer | ((stdin: Writable) => Promise<void>);
  /** Stderr a line at a time; a line longer than MAX_LINE_PIECE comes in pieces marked `continued`. */
  onStderrLine?(line: string, continued?: boolean): void;
  timeoutMs: number;
  signal?: AbortSignal;
}

export interface ExecResult {
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  stopped: "timeout" | "aborted" | null;
  stdout: string;
  /** The tail of stderr, for messages. */
  stderr: string;
}

const MAX_STDOUT = 16 * 1024 * 1024;
const STDERR_TAIL = 8 * 1024;
const KILL_GRACE_MS = 2000;
const HOST_KEY_FAILURE =
  /Host key verification failed|REMOTE HOST IDENTIFICATION HAS CHANGED|No [A-Za-z0-9-]+ host key is known|Host key for .* has changed/i;

export class SshConnection {
  private controlDir: Promise<string> | null = null;
  private readonly ssh: string;
  private readonly connectTimeout: number;
  private readonly persist: number;
  private readonly base: string;

  constructor(
    readonly host: SshHostConfig,
    options: SshClientOptions = {},
  ) {
    this.ssh = options.sshCommand ?? "ssh";
    this.connectTimeout = options.connectTimeoutSeconds ?? 10;
    this.persist = options.controlPersistSeconds ?? 60;
    this.base = controlBase(options.controlBase);
    this.kept = options.keptScripts ?? new Set();
    this.keptKey = keptScriptKey(host);
  }

  /**
   * Runs one operation of the remote script: by the copy kept on the host
   * (installed by the first operation that finds none), else with the whole
   * script in the command line. Never throws for a non-zero exit: see `failure`.
   */
  async exec(op: RemoteOp, args: readonly string[], options: ExecOptions): Promise<ExecResult> {
    if (!(await this.scriptKept(options))) return this.run(remoteCommand(op, args), options);
    const result = await this.run(keptScriptCommand(this.host.root, op, args), options);
    if (result.exitCode !== EXIT_NO_KEPT_SCRIPT) return result;
    // Removed or damaged since (by hand): installed again, and the operation
    // runs again when its input can be given twice (a stream cannot: it failed).
    this.kept.delete(this.keptKey);
    this.keptChecked = null;
    if (typeof options.input === "function" || !(await this.scriptKept(options))) return result;
    return this.run(keptScriptCommand(this.host.root, op, args), options);
  }

  private readonly kept: KeptScripts;
  private readonly keptKey: string;
  /** This connection's one question (and install): whether the host holds the script. */
  private keptChecked: Promise<boolean> | null = null;

  /** Whether the host holds this version of the script now; installs it when it does not. */
  private scriptKept(options: Pick<ExecOptions, "timeoutMs" | "signal">): Promise<boolean> {
    if (this.kept.has(this.keptKey)) return Promise.resolve(true);
    this.keptChecked ??= this.checkScript(options).then(
      (kept) => {
        if (kept) this.kept.add(this.keptKey);
        return kept;
      },
      () => false,
    );
    return this.keptChecked;
  }

  private async checkScript(options: Pick<ExecOptions, "timeoutMs" | "signal">): Promise<boolean> {
    const bounds = { timeoutMs: options.timeoutMs, ...(options.signal ? { signal: options.signal } : {}) };
    // A question that reads nothing: the launcher answers it only with a good copy (`hello` is cheap).
    const probe = await this.run(keptScriptCommand(this.host.root, "hello", []), bounds);
    if (probe.exitCode === 0) return true;
    if (probe.exitCode !== EXIT_NO_KEPT_SCRIPT) return false;
    const installed = await this.run(installScriptCommand(this.host.root), {
      ...bounds,
      input: REMOTE_SCRIPT,
    });
    // Where it cannot be kept (a read-only root, no space), every command line carries the script.
    return installed.exitCode === 0;
  }

  private async run(command: string, options: ExecOptions): Promise<ExecResult> {
    const argv = [...(await this.options()), "--", this.host.address, command];
    return new Promise<ExecResult>((resolve, reject) => {
      const child = spawn(this.ssh, argv, { stdio: ["pipe", "pipe", "pipe"], detached: true, shell: false });
      let stdout = "";
      let stderr = "";
      const tail = new LineTail(STDERR_TAIL);
      let partial = "";
      let stopped: ExecResult["stopped"] = null;
      let inputError: unknown;
      let killTimer: NodeJS.Timeout | undefined;
      const signalGroup = (sig: NodeJS.Signals) => {
        if (child.pid === undefined) return;
        try {
          process.kill(-child.pid, sig);
        } catch {
          // Already gone.
        }
      };
      const stop = (reason: "timeout" | "aborted") => {
        if (stopped || child.exitCode !== null) return;
        stopped = reason;
        signalGroup("SIGTERM");
        killTimer = setTimeout(() => signalGroup("SIGKILL"), KILL_GRACE_MS);
      };
      const timer = setTimeout(() => stop("timeout"), options.timeoutMs);
      const onAbort = () => stop("aborted");
      if (options.signal?.aborted) queueMicrotask(onAbort);
      else options.signal?.addEventListener("abort", onAbort, { once: true });

      child.stdout.setEncoding("utf8");
      child.stdout.on("data", (text: string) => {
        stdout += text;
        if (stdout.length > MAX_STDOUT) stop("aborted");
      });
      child.stderr.setEncoding("utf8");
      child.stderr.on("data", (text: string) => {
        stderr = tail.add(text);
        if (!options.onStderrLine) return;
        const lines = (partial + text).split("\n");
        partial = lines.pop()!;
        for (const line of lines) options.onStderrLine(line.replace(/\r$/, ""));
        // Never held without bound nor cut short: the server masks the pieces as one stream.
        while (partial.length > MAX_LINE_PIECE) {
          const cut = pieceEnd(partial, MAX_LINE_PIECE);
          options.onStderrLine(partial.slice(0, cut), true);
          partial = partial.slice(cut);
        }
      });
      // The remote side may stop reading early (a release already staged): not an error here.
      child.stdin.on("error", () => undefined);
      child.on("error", (error) => {
        clearTimeout(timer);
        reject(
          new TurnoutError("E_UNAVAILABLE", `cannot run ssh for host ${this.host.name}: ${error.message}`),
        );
      });
      child.on("close", (code, sig) => {
        clearTimeout(timer);
        clearTimeout(killTimer);
        options.signal?.removeEventListener("abort", onAbort);
        if (partial && options.onStderrLine) options.onStderrLine(partial);
        if (inputError !== undefined) reject(inputError);
        else resolve({ exitCode: code, signal: sig, stopped, stdout, stderr });
      });

      const input = options.input;
      if (typeof input === "function") {
        input(child.stdin).catch((error: unknown) => {
          inputError = error;
          stop("aborted");
        });
      } else {
        child.stdin.end(input ?? "");
      }
    });
  }

  /** The error for a failed operation: ssh's own failures, refusals and failures of the script. */
  failure(result: ExecResult, what: string): TurnoutError {
    const name = this.host.name;
    const details = { host: name, exitCode: result.exitCode };
    if (result.stopped === "timeout")
      return new TurnoutError("E_UNAVAILABLE", `${what} on ${name} timed out`, details);
    if (result.stopped === "aborted")
      return new TurnoutError("E_UNAVAILABLE", `${what} on ${name} was stopped`, details);
    if (result.exitCode === 255) {
      if (HOST_KEY_FAILURE.test(result.stderr)) {
        return new TurnoutError(
          "E_UNAVAILABLE",
          `host key verification failed for ${name} (${this.host.address}:${this.host.port}): the key it presented is not the one pinned in ${this.host.knownHostsFile}`,
          { ...details, hostKey: "mismatch" },
        );
      }
      return new TurnoutError(
        "E_UNAVAILABLE",
        `ssh to ${name} failed: ${lastLine(result.stderr) || "no answer"}`,
        details,
      );
    }
    const said = hostMessage(result.stderr) ?? lastLine(result.stderr);
    const message = `${what} on ${name} failed: ${said || `exit status ${result.exitCode ?? result.signal}`}`;
    switch (result.exitCode) {
      case EXIT_REFUSED:
        return new TurnoutError("E_VALIDATION", message, details);
      case EXIT_NOT_FOUND:
        return new TurnoutError("E_NOT_FOUND", message, details);
      case EXIT_HOOK_FAILED: {
        const exitCode = Number(/exit code ([0-9]+)/.exec(said)?.[1] ?? Number.NaN);
        return new TurnoutError("E_VALIDATION", said, { host: name, exitCode });
      }
      case EXIT_UNUSABLE:
        return new TurnoutError("E_UNAVAILABLE", message, details);
      case EXIT_NO_KEPT_SCRIPT:
        // Only an operation whose input was a stream gets here (any other ran again): the
        // copy went away during the deploy. It is installed again by the next operation,
        // and E_UNAVAILABLE has the orchestrator try this one once more.
        return new TurnoutError(
          "E_UNAVAILABLE",
          `${what} on ${name} failed: Turnout's script kept on the host (${this.host.root}/.turnout/bin) was removed or damaged meanwhile; it is installed again`,
          details,
        );
      default:
        return new TurnoutError("E_CONFLICT", message, details);
    }
  }

  /** Ends the shared connection and removes its socket directory. */
  async close(): Promise<void> {
    const pending = this.controlDir;
    this.controlDir = null;
    if (!pending) return;
    const dir = await pending.catch(() => null);
    if (!dir) return;
    await new Promise<void>((resolve) => {
      const child = spawn(
        this.ssh,
        [
          "-F",
          "/dev/null",
          "-o",
          `ControlPath=${path.join(dir, "m")}`,
          "-O",
          "exit",
          "-p",
          String(this.host.port),
          "-l",
          this.host.user,
          "--",
          this.host.address,
        ],
        { stdio: "ignore", detached: true },
      );
      const timer = setTimeout(() => child.kill("SIGKILL"), 5000);
      child.on("error", () => resolve());
      child.on("close", () => {
        clearTimeout(timer);
        resolve();
      });
    });
    await rm(dir, { recursive: true, force: true });
  }

  private async options(): Promise<string[]> {
    this.controlDir ??= mkdtemp(path.join(this.base, "turnout-ssh-"));
    const dir = await this.controlDir;
    return [
      "-F",
      "/dev/null",
      "-T",
      "-x",
      "-a",
      "-o",
      "BatchMode=yes",
      "-o",
      "StrictHostKeyChecking=yes",
      "-o",
      `UserKnownHostsFile=${this.host.knownHostsFile}`,
      "-o",
      "GlobalKnownHostsFile=/dev/null",
      "-o",
      "UpdateHostKeys=no",
      "-o",
      "CheckHostIP=no",
      "-o",
      "IdentitiesOnly=yes",
      "-o",
      `IdentityFile=${this.host.keyFile}`,
      "-o",
      "PreferredAuthentications=publickey",
      "-o",
      "ClearAllForwardings=yes",
      "-o",
      `ConnectTimeout=${this.connectTimeout}`,
      "-o",
      "ServerAliveInterval=15",
      "-o",
      "ServerAliveCountMax=4",
      "-o",
      "LogLevel=ERROR",
      "-o",
      "ControlMaster=auto",
      "-o",
      `ControlPath=${path.join(dir, "m")}`,
      "-o",
      `ControlPersist=${this.persist}`,
      "-p",
      String(this.host.port),
      "-l",
      this.host.user,
    ];
  }
}

/**
 * A directory for control sockets: mkdtemp makes it 0700, so no other user can
 * reach the authenticated connection. Socket paths are short (108 bytes) and
 * ssh expands `%` in them, hence /tmp when TMPDIR is long or odd.
 */
function controlBase(wanted: string | undefined): string {
  const dir = path.resolve(wanted ?? os.tmpdir());
  return dir.length <= 60 && /^[A-Za-z0-9/._-]+$/.test(dir) ? dir : "/tmp";
}

function lastLine(text: string): string {
  const lines = text.split("\n").filter((l) => l.trim() !== "");
  return lines.at(-1)?.trim() ?? "";
}

/** The script's own last word (`turnout-host: …`), when it gave one. */
/**
 * The last lines of a stream, at most `max` characters, and only whole
 * lines: messages quote lines from it, and a line cut at its start could
 * hold the end of a secret that the masker no longer recognises. A line
 * longer than `max` is left out, all of it.
 */
class LineTail {
  private text = "";
  /** Inside a line too long to keep: drop until its end. */
  private skipping = false;

  constructor(private readonly max: number) {}

  add(chunk: string): string {
    let rest = chunk;
    if (this.skipping) {
      const newline = rest.indexOf("\n");
      if (newline === -1) return this.text;
      rest = rest.slice(newline + 1);
      this.skipping = false;
    }
    const joined = this.text + rest;
    if (joined.length <= this.max) {
      this.text = joined;
      return this.text;
    }
    const kept = joined.slice(-this.max);
    const newline = kept.indexOf("\n");
    if (newline === -1) {
      this.text = "";
      this.skipping = true;
    } else {
      this.text = kept.slice(newline + 1);
    }
    return this.text;
  }
}

function hostMessage(stderr: string): string | undefined {
  const lines = stderr.split("\n").filter((l) => l.startsWith("turnout-host: "));
  return lines.at(-1)?.slice("turnout-host: ".length);
}

/** One host's file system as far as the kept script goes: where ssh lands and the root there. */
export function keptScriptKey(host: Pick<SshHostConfig, "address" | "port" | "user" | "root">): string {
  return `${host.user}@${host.address}:${host.port}${host.root}`;
}
