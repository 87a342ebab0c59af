import { type ChildProcess, spawn } from "node:child_process";
import { mkdirSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { assertHostConsistent } from "../../src/agent/host-layout/index.js";
import { until } from "./wait.js";

const BIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../bin/turnout.js");

/** A real `turnout agent` process with a root of its own (call ensureBuilt() first). */
export interface AgentProcess {
  name: string;
  root: string;
  child: ChildProcess;
  output(): string;
  /** Stops it the hard way (a host dying). */
  kill(): Promise<void>;
  /** Starts it again with the same name and root (a host coming back). */
  restart(): Promise<AgentProcess>;
}

/** A manifest whose production is a self-healing fleet of the hosts labelled role=web. */
export const SELF_HEALING_WEB_FLEET = `repo: "{repo}"
environments:
  production:
    self_heal: true
    deploy:
      provider: fleet
      hosts: { labels: { role: web } }
`;

export interface AgentOptions {
  serverUrl: string;
  token: string;
  name: string;
  root: string;
  labels?: Record<string, string>;
  /** More `turnout agent` flags (e.g. --max-protocol to act as an older agent). */
  extraArgs?: string[];
}

export function startAgent(options: AgentOptions): AgentProcess {
  mkdirSync(options.root, { recursive: true });
  const labels = Object.entries(options.labels ?? {}).flatMap(([k, v]) => ["--label", `${k}=${v}`]);
  const child = spawn(
    process.execPath,
    [
      BIN,
      "agent",
      "--server",
      options.serverUrl,
      "--token",
      options.token,
      "--name",
      options.name,
      "--root",
      options.root,
      ...labels,
      ...(options.extraArgs ?? []),
    ],
    { env: { PATH: process.env["PATH"], HOME: options.root }, stdio: ["ignore", "pipe", "pipe"] },
  );
  let output = "";
  child.stdout!.setEncoding("utf8").on("data", (d: string) => {
    output += d;
  });
  child.stderr!.setEncoding("utf8").on("data", (d: string) => {
    output += d;
  });
  const exited = new Promise<void>((resolve) => child.on("close", () => resolve()));
  return {
    name: options.name,
    root: options.root,
    child,
    output: () => output,
    kill: async () => {
      child.kill("SIGKILL");
      await exited;
    },
    restart: async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill("SIGKILL");
        await exited;
      }
      return startAgent(options);
    },
  };
}

/** Waits until the server lists every named host as connected. */
export async function waitForHosts(
  api: (method: string, path: string) => Promise<{ body: any }>,
  names: string[],
  timeoutMs = 20_000,
): Promise<void> {
  await until(
    async () => {
      const { body } = await api("GET", "/api/v1/hosts");
      const connected = new Set((body.hosts ?? []).filter((h: any) => h.connected).map((h: any) => h.name));
      return names.every((n) => connected.has(n));
    },
    timeoutMs,
    `hosts ${names.join(", ")} connected`,
  );
}

/** The release `current` points at under an agent root (null when none). */
export async function currentOf(root: string, app: string): Promise<string | null> {
  const { readlink } = await import("node:fs/promises");
  try {
    return path.basename(await readlink(path.join(root, app, "current")));
  } catch {
    return null;
  }
}

/** The invariant of every fleet test: no pointer ever names a release that is not fully staged. */
export async function assertConsistent(roots: string[]): Promise<void> {
  for (const root of roots) await assertHostConsistent(root);
}

/** A port free right now on loopback. */
export async function freePort(): Promise<number> {
  const { createServer } = await import("node:net");
  return new Promise((resolve) => {
    const server = createServer().listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}
