import { mkdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { freePort } from "./fleet.js";
import { type ServerProcess, startServerProcess } from "./server-process.js";
import { until } from "./wait.js";

/**
 * Several real `turnout server` processes on one PostgreSQL schema, each
 * with its own data directory and a fixed port (a killed server comes back
 * where its agents expect it), sharing one configuration directory.
 */
export interface ClusterServer {
  index: number;
  port: number;
  url: string;
  dataDir: string;
  process: ServerProcess | undefined;
}

export interface Cluster {
  servers: ClusterServer[];
  /** The admin token (the first server to start creates it in the shared database). */
  admin(): string;
  api(
    server: ClusterServer,
    method: string,
    urlPath: string,
    body?: unknown,
  ): Promise<{ status: number; body: any }>;
  /** Any live server's API. */
  anyApi(method: string, urlPath: string, body?: unknown): Promise<{ status: number; body: any }>;
  start(server: ClusterServer): Promise<void>;
  kill(server: ClusterServer): Promise<void>;
  stop(): Promise<void>;
}

export async function startCluster(options: {
  count: number;
  root: string;
  configDir: string;
  databaseUrl: string;
  env?: Record<string, string>;
}): Promise<Cluster> {
  const servers: ClusterServer[] = [];
  for (let index = 0; index < options.count; index++) {
    const dataDir = path.join(options.root, `server-${index}`);
    mkdirSync(dataDir, { recursive: true });
    const port = await freePort();
    servers.push({ index, port, url: `http://127.0.0.1:${port}`, dataDir, process: undefined });
  }
  const env = {
    PATH: process.env["PATH"],
    HOME: options.root,
    XDG_CONFIG_HOME: path.join(options.root, "xdg"),
    TURNOUT_DATABASE_URL: options.databaseUrl,
    ...options.env,
  };
  let admin: string | undefined;
  const start = async (server: ClusterServer) => {
    server.process = await startServerProcess({
      dataDir: server.dataDir,
      configDir: options.configDir,
      cwd: options.root,
      env: { ...env, TURNOUT_HOME: server.dataDir },
      port: server.port,
    });
    if (admin === undefined) {
      try {
        admin = readFileSync(path.join(server.dataDir, "admin-token"), "utf8").trim();
      } catch {
        // another server created it
      }
    }
  };
  const api = async (server: ClusterServer, method: string, urlPath: string, body?: unknown) => {
    const res = await fetch(server.url + urlPath, {
      method,
      headers: {
        authorization: `Bearer ${admin}`,
        ...(body ? { "content-type": "application/json" } : {}),
      },
      ...(body ? { body: JSON.stringify(body) } : {}),
    });
    return { status: res.status, body: (await res.json()) as any };
  };
  // One after the other: the first creates the schema's tables and the admin token.
  for (const server of servers) await start(server);
  if (admin === undefined) throw new Error("no server wrote the admin token");
  const kill = async (server: ClusterServer) => {
    const running = server.process;
    server.process = undefined;
    if (!running) return;
    running.child.kill("SIGKILL");
    await running.exited;
  };
  return {
    servers,
    admin: () => admin!,
    api,
    anyApi: async (method, urlPath, body) => {
      let last: unknown;
      for (const server of servers) {
        if (!server.process) continue;
        try {
          return await api(server, method, urlPath, body);
        } catch (error) {
          last = error; // killed meanwhile: ask the next
        }
      }
      throw last ?? new Error("no server is running");
    },
    start,
    kill,
    stop: async () => {
      for (const server of servers) await kill(server);
    },
  };
}

/**
 * How often waits on a cluster ask a server: each poll is an HTTP request and
 * PostgreSQL queries in a server process, which the servers under test need
 * their CPU for (multi-server-faults polls for minutes).
 */
export const CLUSTER_POLL_MS = 100;

/** Waits until the cluster lists every named host as connected (to whichever server). */
export async function waitForClusterHosts(
  cluster: Cluster,
  names: string[],
  timeoutMs = 30_000,
): Promise<void> {
  await until(
    async () => {
      const { body } = await cluster.anyApi("GET", "/api/v1/hosts");
      const connected = new Set((body.hosts ?? []).filter((h: any) => h.connected).map((h: any) => h.name));
      return names.every((n) => connected.has(n));
    },
    timeoutMs,
    `hosts ${names.join(", ")} connected`,
    CLUSTER_POLL_MS,
  );
}
