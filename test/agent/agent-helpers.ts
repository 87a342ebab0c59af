import { type ChildProcess, spawn } from "node:child_process";
import { readdirSync, readFileSync, readlinkSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Agent, type AgentOptions } from "../../src/agent/agent.js";
import { LocalHostOps } from "../../src/agent/host-layout/index.js";

const BIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../bin/turnout.js");

/** A real `turnout agent` process (call ensureBuilt() first). */
export interface AgentProcess {
  child: ChildProcess;
  pid: number;
  output(): string;
  /** Lines of output matching `pattern`. */
  count(pattern: RegExp): number;
  exited: Promise<number | null>;
  kill(signal?: NodeJS.Signals): Promise<number | null>;
}

export function spawnAgent(args: string[], env: Record<string, string | undefined> = {}): AgentProcess {
  const child = spawn(process.execPath, [BIN, "agent", ...args], {
    env: { PATH: process.env["PATH"], HOME: process.env["HOME"], ...env } as NodeJS.ProcessEnv,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
    output += chunk;
  });
  child.stderr!.setEncoding("utf8").on("data", (chunk: string) => {
    output += chunk;
  });
  const exited = new Promise<number | null>((resolve) => child.on("close", (code) => resolve(code)));
  return {
    child,
    pid: child.pid!,
    output: () => output,
    count: (pattern) => output.split("\n").filter((line) => pattern.test(line)).length,
    exited,
    async kill(signal = "SIGKILL") {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}

/**
 * Whether a process has a listening TCP socket, without lsof or ss: the
 * inodes of its socket descriptors against the LISTEN (state 0A) entries of
 * /proc/net/tcp and tcp6.
 */
export function listeningSockets(pid: number): number {
  const inodes = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const match = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (match) inodes.add(match[1]!);
    } catch {
      // closed meanwhile
    }
  }
  let listening = 0;
  for (const table of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    let text = "";
    try {
      text = readFileSync(table, "utf8");
    } catch {
      continue;
    }
    for (const line of text.split("\n").slice(1)) {
      const fields = line.trim().split(/\s+/);
      if (fields[3] === "0A" && inodes.has(fields[9] ?? "")) listening++;
    }
  }
  return listening;
}

/** Socket descriptors the process holds (to show the check above looks at real sockets). */
export function socketCount(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).filter((fd) => {
    try {
      return readlinkSync(`/proc/${pid}/fd/${fd}`).startsWith("socket:");
    } catch {
      return false;
    }
  }).length;
}

/**
 * An in-process agent "web-1" with a real host layout under `root`, talking
 * to a scripted server on loopback `port` (the tests of the agent's side of
 * the protocol); `options` adds to or replaces its defaults.
 */
export function scriptedServerAgent(port: number, root: string, options: Partial<AgentOptions> = {}): Agent {
  return new Agent({
    server: `http://127.0.0.1:${port}`,
    enrollmentToken: "tnt_test",
    name: "web-1",
    labels: {},
    root,
    version: "test",
    ops: new LocalHostOps({ name: "web-1", root, fsyncs: false }),
    print: () => undefined,
    ...options,
  });
}
