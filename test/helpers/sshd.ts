import { type ChildProcess, execFile, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import { promisify } from "node:util";
import { TreeBuilder } from "../../src/artifacts/tree-builder.js";
import { type ArtifactManifest, hostReleaseId, manifestDigest } from "../../src/domain/artifact.js";
import type { SshHostConfig } from "../../src/domain/fleet.js";
import type { BlobSource } from "../../src/providers/fleet/host-ops.js";

const run = promisify(execFile);
const SSHD = "/usr/sbin/sshd";

/**
 * A real OpenSSH server on a loopback port, for SSH hosts in tests. Every
 * instance has its own directory (keys, config, pid file, release root), so a
 * test may run several side by side as a fleet. It logs in as the user running
 * the tests (root in CI) with a key made for it, and the known_hosts file pins
 * this instance's host key only.
 *
 * Sessions are hermetic: sshd starts every session through the user's login
 * shell, and bash reads ~/.bashrc for SSH sessions even when they are not
 * interactive. The test user's own rc files (a version manager's `init`
 * spawns dozens of processes) made every operation cost 200 ms here, and
 * seconds on a loaded machine, which is what made the SSH fleet tests time
 * out under load. Each instance gives its sessions an empty HOME of its own
 * and no ~/.ssh/rc, so what a test measures is Turnout, not the account.
 */
export interface SshdInstance {
  port: number;
  user: string;
  /** Private key accepted by this server. */
  keyFile: string;
  /** `[127.0.0.1]:<port> <host key>`: strict checking passes for this server only. */
  knownHostsFile: string;
  /** Host public key line (`ssh-ed25519 AAAA…`). */
  hostPublicKey: string;
  /** An empty directory to use as the host's release root. */
  root: string;
  /** This instance's private directory (keys, config). */
  dir: string;
  /** HOME of this instance's sessions: empty, so no startup file of the test user runs. */
  home: string;
  /** An SshHostConfig for this server. */
  config(name: string, labels?: Record<string, string>): SshHostConfig;
  /** sshd's own log (stderr, `-e`). */
  output(): string;
  stop(): Promise<void>;
}

export async function startSshd(options: { port?: number } = {}): Promise<SshdInstance> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "turnout-sshd-"));
  try {
    return await startIn(dir, options.port);
  } catch (error) {
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
}

/** `fixedPort`: that port or fail (default: a free one, with a few tries). */
async function startIn(dir: string, fixedPort: number | undefined): Promise<SshdInstance> {
  // sshd refuses to start without its privilege separation directory.
  await mkdir("/run/sshd", { recursive: true, mode: 0o755 }).catch(() => undefined);
  const hostKey = path.join(dir, "host_key");
  const clientKey = path.join(dir, "client_key");
  await run("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "turnout-test-host", "-f", hostKey]);
  await run("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "turnout-test-client", "-f", clientKey]);
  const authorizedKeys = path.join(dir, "authorized_keys");
  await writeFile(authorizedKeys, await readFile(`${clientKey}.pub`), { mode: 0o600 });
  const hostPublicKey = (await readFile(`${hostKey}.pub`, "utf8")).trim().split(" ").slice(0, 2).join(" ");
  const root = path.join(dir, "root");
  await mkdir(root);
  const home = path.join(dir, "home");
  await mkdir(home);
  const user = os.userInfo().username;

  // A free port can be taken between probing and binding: try a few.
  let lastError: unknown;
  for (let attempt = 0; attempt < (fixedPort === undefined ? 5 : 1); attempt++) {
    const port = fixedPort ?? (await freePort());
    const configFile = path.join(dir, "sshd_config");
    await writeFile(
      configFile,
      [
        `Port ${port}`,
        "ListenAddress 127.0.0.1",
        `HostKey ${hostKey}`,
        `AuthorizedKeysFile ${authorizedKeys}`,
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "UsePAM no",
        "PermitRootLogin prohibit-password",
        "StrictModes no",
        `PidFile ${path.join(dir, "sshd.pid")}`,
        "Subsystem sftp internal-sftp",
        // Multiplexed connections open many sessions on one connection.
        "MaxSessions 64",
        "MaxStartups 64",
        // Hermetic sessions (see above): set after sshd's own HOME, so it wins; no ~/.ssh/rc either.
        `SetEnv "HOME=${home}"`,
        "PermitUserRC no",
        // INFO prints "Server listening on …", the readiness signal waited for below.
        "LogLevel INFO",
        "",
      ].join("\n"),
    );
    const knownHostsFile = path.join(dir, "known_hosts");
    await writeFile(knownHostsFile, `[127.0.0.1]:${port} ${hostPublicKey}\n`);
    const child = spawn(SSHD, ["-D", "-e", "-f", configFile], { stdio: ["ignore", "ignore", "pipe"] });
    let output = "";
    child.stderr!.setEncoding("utf8").on("data", (text: string) => {
      output += text;
    });
    try {
      await listening(child, port, () => output);
    } catch (error) {
      lastError = error;
      await kill(child);
      continue;
    }
    return {
      port,
      user,
      keyFile: clientKey,
      knownHostsFile,
      hostPublicKey,
      root,
      dir,
      home,
      output: () => output,
      config: (name, labels = {}) => ({
        name,
        address: "127.0.0.1",
        port,
        user,
        keyFile: clientKey,
        knownHostsFile,
        root,
        labels,
      }),
      stop: async () => {
        await kill(child);
        await rm(dir, { recursive: true, force: true });
      },
    };
  }
  throw lastError instanceof Error ? lastError : new Error("sshd did not start");
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/**
 * Resolves when sshd itself says it listens on `port`, rejects when it exits
 * first (a port taken between freePort() and its bind). No connection probe:
 * a probe can be answered by whatever else took the port, and no deadline:
 * on a loaded machine starting takes what it takes, and the test's own
 * timeout bounds it.
 */
function listening(child: ChildProcess, port: number, output: () => string): Promise<void> {
  const ready = `Server listening on 127.0.0.1 port ${port}.`;
  return new Promise<void>((resolve, reject) => {
    const onData = () => {
      if (!output().includes(ready)) return;
      cleanup();
      resolve();
    };
    const onExit = () => {
      cleanup();
      reject(new Error(`sshd exited (${child.exitCode ?? child.signalCode}):\n${output()}`));
    };
    const cleanup = () => {
      child.stderr!.off("data", onData);
      child.off("exit", onExit);
    };
    // Listeners first, then the state: the line may already be in, or sshd already gone.
    child.stderr!.on("data", onData);
    child.once("exit", onExit);
    if (child.exitCode !== null || child.signalCode !== null) onExit();
    else onData();
  });
}

/** The listener, and first the per-connection sshd processes it forked (they outlive it otherwise). */
async function kill(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  if (child.pid !== undefined) {
    for (const pid of await childrenOf(child.pid)) {
      try {
        process.kill(pid, "SIGTERM");
      } catch {
        // Already gone.
      }
    }
  }
  const closed = new Promise<void>((resolve) => child.once("close", () => resolve()));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), 3000);
  await closed;
  clearTimeout(timer);
}

/** Direct children of `parent`, from /proc (no ps needed). */
async function childrenOf(parent: number): Promise<number[]> {
  const pids: number[] = [];
  for (const name of await readdir("/proc").catch(() => [] as string[])) {
    if (!/^[0-9]+$/.test(name)) continue;
    const stat = await readFile(`/proc/${name}/stat`, "utf8").catch(() => "");
    // "pid (comm) state ppid …": comm may hold spaces and parentheses, so read after the last ")".
    const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
    if (ppid === parent) pids.push(Number(name));
  }
  return pids;
}

/** A release built in memory: its manifest, its blobs and the id hosts know it by. */
export interface MemoryRelease {
  id: string;
  manifest: ArtifactManifest;
  blobs: Map<string, Buffer>;
  source: BlobSource & { opened: string[] };
}

export type MemoryEntry =
  | string
  | Buffer
  | { content: string | Buffer; mode: number }
  | { link: string }
  | { dir: number };

/** `{ "bin/run": { content: "…", mode: 0o755 }, "docs": { dir: 0o755 }, "latest": { link: "bin/run" } }` → a release. */
export function memoryRelease(tree: Record<string, MemoryEntry>): MemoryRelease {
  const builder = new TreeBuilder();
  const blobs = new Map<string, Buffer>();
  for (const [p, value] of Object.entries(tree)) {
    if (typeof value === "string" || Buffer.isBuffer(value) || "content" in value) {
      const content = Buffer.from(
        typeof value === "string" || Buffer.isBuffer(value) ? value : value.content,
      );
      const mode = typeof value === "object" && "mode" in value ? value.mode : 0o644;
      const sha256 = createHash("sha256").update(content).digest("hex");
      blobs.set(sha256, content);
      builder.add({ path: p, type: "file", mode, size: content.length, sha256 });
    } else if ("link" in value) {
      builder.add({ path: p, type: "symlink", target: value.link });
    } else {
      builder.add({ path: p, type: "dir", mode: value.dir });
    }
  }
  const manifest = builder.finish();
  return { id: hostReleaseId(manifestDigest(manifest)), manifest, blobs, source: blobSource(blobs) };
}

/** A BlobSource over a map, recording what was opened. */
export function blobSource(blobs: Map<string, Buffer>): BlobSource & { opened: string[] } {
  const opened: string[] = [];
  return {
    opened,
    async open(sha256: string) {
      const blob = blobs.get(sha256);
      if (!blob) throw new Error(`no blob ${sha256}`);
      opened.push(sha256);
      return Readable.from([blob]);
    },
  };
}
