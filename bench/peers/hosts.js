// The N hosts of the peer benchmark: one real sshd per host, each in a mount
// namespace of its own (`unshare --mount`) where the host's directory is
// bind-mounted at /srv/peers and an empty directory at /root, so every tool
// deploys to the same path on every host and sees only that host's files.
// Each host is reached through a byte-counting TCP proxy on its own loopback
// address (127.0.1.<i>:2222 → sshd on 127.0.2.<i>:2222): what a tool put on
// the wire for a host, both directions, is read off the proxy.
//
// The login environment is fixed here and not the machine's: sshd gets its
// own config (no PAM, so no /etc/environment; no user environment; SetEnv
// for the locale), root's HOME in the namespace is empty (no .bashrc,
// .profile or .ssh of the machine's root), keys and known_hosts are the
// run's own, and every client reads the run's ssh_config (`-F`).
import { execFileSync, spawn } from "node:child_process";
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import { sleep, track } from "../lib.js";

export const MOUNT = "/srv/peers";
export const SSH_PORT = 2222;
/**
 * The git daemon as the hosts see it. Tools that clone on the host (Ansible,
 * Capistrano) are given this URL: each host's namespace has its own
 * /etc/hosts naming its own address for `peers-git`, where a counting proxy
 * forwards to the daemon, so a host's git traffic is counted as its own.
 */
export const GIT_NAME = "peers-git";
export const GIT_PORT = 9418;
export const hostAddress = (i) => `127.0.1.${i + 1}`;
const sshdAddress = (i) => `127.0.2.${i + 1}`;

/**
 * Client and host keys, ssh_config, and an `ssh` wrapper that uses it. RSA:
 * Debian 12's net-ssh 7.0 (Capistrano) needs extra gems for Ed25519 and
 * cannot sign with ECDSA keys, nor read OpenSSH-format RSA keys, under
 * OpenSSL 3: the client key is RSA in PEM format.
 */
export function makeKeys(work, maxHosts) {
  const dir = path.join(work, "ssh");
  mkdirSync(dir, { recursive: true });
  const key = path.join(dir, "client");
  const hostKey = path.join(dir, "host_rsa");
  execFileSync("ssh-keygen", [
    "-q",
    "-t",
    "rsa",
    "-b",
    "3072",
    "-m",
    "PEM",
    "-N",
    "",
    "-C",
    "bench",
    "-f",
    key,
  ]);
  execFileSync("ssh-keygen", ["-q", "-t", "rsa", "-b", "3072", "-N", "", "-C", "host", "-f", hostKey]);
  const authorizedKeys = path.join(dir, "authorized_keys");
  writeFileSync(authorizedKeys, readFileSync(`${key}.pub`));
  const hostPub = readFileSync(`${hostKey}.pub`, "utf8").trim().split(" ").slice(0, 2).join(" ");
  const knownHosts = path.join(dir, "known_hosts");
  writeFileSync(
    knownHosts,
    Array.from({ length: maxHosts }, (_, i) => `[${hostAddress(i)}]:${SSH_PORT} ${hostPub}\n`).join(""),
  );
  const config = path.join(dir, "ssh_config");
  writeFileSync(
    config,
    [
      "Host *",
      "  User root",
      `  Port ${SSH_PORT}`,
      `  IdentityFile ${key}`,
      "  IdentitiesOnly yes",
      `  UserKnownHostsFile ${knownHosts}`,
      "  GlobalKnownHostsFile /dev/null",
      "  StrictHostKeyChecking yes",
      "  BatchMode yes",
      "  LogLevel ERROR",
      "",
    ].join("\n"),
  );
  // shipit (ssh-pool) and rsync start `ssh` by name: this one, first on their PATH, adds -F.
  const bin = path.join(dir, "bin");
  mkdirSync(bin, { recursive: true });
  writeFileSync(path.join(bin, "ssh"), `#!/bin/sh\nexec /usr/bin/ssh -F ${config} "$@"\n`);
  chmodSync(path.join(bin, "ssh"), 0o755);
  return { dir, key, hostKey, authorizedKeys, knownHosts, config, bin };
}

/** A TCP proxy that counts the bytes it carries each way; `retarget` points new connections elsewhere. */
export function startProxy(listenHost, listenPort, targetHost, targetPort) {
  const counter = { up: 0, down: 0, target: { host: targetHost, port: targetPort } };
  const sockets = new Set();
  const server = net.createServer((client) => {
    const upstream = net.connect(counter.target.port, counter.target.host);
    sockets.add(client);
    sockets.add(upstream);
    client.on("data", (d) => {
      counter.up += d.length;
      if (!upstream.write(d)) client.pause();
    });
    upstream.on("drain", () => client.resume());
    upstream.on("data", (d) => {
      counter.down += d.length;
      if (!client.write(d)) upstream.pause();
    });
    client.on("drain", () => upstream.resume());
    client.on("end", () => upstream.end());
    upstream.on("end", () => client.end());
    // On an error both ends go at once; on a close the other end is only
    // ended, so what it still has buffered reaches its peer (destroying it
    // here cut off the last bytes of sessions under load: a check read "").
    const fail = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on("error", fail);
    upstream.on("error", fail);
    client.on("close", () => {
      sockets.delete(client);
      upstream.end();
    });
    upstream.on("close", () => {
      sockets.delete(upstream);
      client.end();
    });
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(listenPort, listenHost, () => {
      counter.port = server.address().port;
      counter.close = () => {
        for (const s of sockets) s.destroy();
        return new Promise((r) => server.close(r));
      };
      resolve(counter);
    });
  });
}

function sshdConfig(i, keys, file) {
  writeFileSync(
    file,
    [
      `ListenAddress ${sshdAddress(i)}:${SSH_PORT}`,
      `HostKey ${keys.hostKey}`,
      "PidFile none",
      `AuthorizedKeysFile ${keys.authorizedKeys}`,
      "PermitRootLogin prohibit-password",
      "PubkeyAuthentication yes",
      "PasswordAuthentication no",
      "KbdInteractiveAuthentication no",
      "UsePAM no",
      "StrictModes no",
      "PermitUserEnvironment no",
      "SetEnv LANG=C.UTF-8",
      "PrintMotd no",
      "PrintLastLog no",
      "UseDNS no",
      "MaxSessions 100",
      "MaxStartups 200",
      "LogLevel ERROR",
      "Subsystem sftp internal-sftp",
      "",
    ].join("\n"),
  );
}

async function waitPort(host, port, child, output) {
  for (let i = 0; ; i++) {
    const ok = await new Promise((resolve) => {
      const s = net.connect(port, host, () => {
        s.destroy();
        resolve(true);
      });
      s.on("error", () => resolve(false));
    });
    if (ok) return;
    if (child.exitCode !== null || i > 200)
      throw new Error(`sshd at ${host}:${port} did not start: ${output()}`);
    await sleep(50);
  }
}

/** Starts n hosts (sshd + proxies each). Host i's files are under `<work>/hosts/h<i>/srv` (seen as /srv/peers). */
export async function startHosts(work, n, keys, gitDaemonPort) {
  mkdirSync(MOUNT, { recursive: true });
  mkdirSync("/run/sshd", { recursive: true, mode: 0o755 });
  const hosts = [];
  for (let i = 0; i < n; i++) {
    const dir = path.join(work, "hosts", `h${i + 1}`);
    const srv = path.join(dir, "srv");
    const home = path.join(dir, "home");
    mkdirSync(srv, { recursive: true });
    mkdirSync(home, { recursive: true, mode: 0o700 });
    const conf = path.join(dir, "sshd_config");
    sshdConfig(i, keys, conf);
    const etcHosts = path.join(dir, "etc-hosts");
    writeFileSync(etcHosts, `127.0.0.1 localhost\n${hostAddress(i)} ${GIT_NAME}\n`);
    const child = track(
      spawn(
        "unshare",
        [
          "--mount",
          "--propagation",
          "private",
          "--",
          "sh",
          "-c",
          'mount --bind "$1" "$2" && mount --bind "$3" /root && mount --bind "$4" /etc/hosts && exec /usr/sbin/sshd -D -e -f "$5"',
          "sh",
          srv,
          MOUNT,
          home,
          etcHosts,
          conf,
        ],
        { stdio: ["ignore", "ignore", "pipe"], env: { PATH: "/usr/sbin:/usr/bin:/sbin:/bin" } },
      ),
    );
    let output = "";
    child.stderr.on("data", (d) => (output += d));
    await waitPort(sshdAddress(i), SSH_PORT, child, () => output);
    const proxy = await startProxy(hostAddress(i), SSH_PORT, sshdAddress(i), SSH_PORT);
    const gitProxy = await startProxy(hostAddress(i), GIT_PORT, "127.0.0.1", gitDaemonPort);
    hosts.push({
      index: i,
      name: `h${i + 1}`,
      address: hostAddress(i),
      srv,
      child,
      proxy,
      gitProxy,
      output: () => output,
    });
  }
  return hosts;
}

export async function stopHosts(hosts) {
  for (const h of hosts) {
    await h.proxy.close();
    await h.gitProxy.close();
    h.child.kill("SIGTERM");
  }
}

/** Runs argv (no shell on this side) and resolves with its stdout; rejects with its stderr. */
export function run(argv, options = {}) {
  return new Promise((resolve, reject) => {
    const child = track(spawn(argv[0], argv.slice(1), { stdio: ["ignore", "pipe", "pipe"], ...options }));
    let out = "";
    let err = "";
    child.stdout.on("data", (d) => (out += d));
    child.stderr.on("data", (d) => (err += d));
    child.once("error", reject);
    // "close", not "exit": a process can exit before its output has been read, and under load a
    // check then read "" (the harness bug behind the first run's failed N = 20 checks).
    child.once("close", (code, signal) =>
      code === 0
        ? resolve(out)
        : reject(
            new Error(
              `${argv.slice(0, 3).join(" ")} … exited ${code ?? signal}:\n${(err + out).slice(-3000)}`,
            ),
          ),
    );
  });
}

/** Reads `<dir>/current/version.txt`'s first line on the host itself, over ssh. */
export function readCurrent(keys, host, dir) {
  return run([
    "/usr/bin/ssh",
    "-F",
    keys.config,
    host.address,
    "head",
    "-n1",
    `${MOUNT}/${dir}/current/version.txt`,
  ]).then((s) => s.trim());
}

export const wireBytes = (hosts) =>
  hosts.reduce((sum, h) => sum + h.proxy.up + h.proxy.down + h.gitProxy.up + h.gitProxy.down, 0);
