import { mkdirSync, writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach } from "vitest";
import { type Cluster, type ClusterServer, startCluster, waitForClusterHosts } from "./cluster.js";
import { createTestDatabase, type TestDatabase } from "./databases.js";
import { type AgentProcess, assertConsistent, startAgent } from "./fleet.js";
import { makeRepo, type TestRepo } from "./git-fixtures.js";
import { until } from "./wait.js";

/**
 * Two real servers on one PostgreSQL (a fresh database), one app `shop`
 * whose repository has one commit, and agents (label role=web, enrolled with
 * one token) each connected to the server the test names: the setting of the
 * routing tests, where a deploy runs on one server and reaches hosts held by
 * the other.
 */
export interface TwoServerFleet {
  root: string;
  database: TestDatabase;
  cluster: Cluster;
  a: ClusterServer;
  b: ClusterServer;
  repo: TestRepo;
  /** The enrollment token the agents used. */
  enroll: string;
  /** The agents, in the order asked; replace an entry to have stop() take care of its successor. */
  agents: AgentProcess[];
  /** Kills the agents, checks their layouts, stops the servers, drops the database, removes the files. */
  stop(): Promise<void>;
}

/** What startTwoServerFleet makes. */
export interface TwoServerFleetOptions {
  /** Prefix of the temporary directory. */
  prefix: string;
  /** `shop.yaml`, given the repository's path and the root directory. */
  manifest(repoPath: string, root: string): string;
  hosts: { name: string; on: "a" | "b" }[];
}

/**
 * For a test file's tests: a starter of two-server fleets, each stopped
 * after the test that started it (an afterEach registered where this is
 * called).
 */
export function twoServerFleets(): (options: TwoServerFleetOptions) => Promise<TwoServerFleet> {
  let started: TwoServerFleet | undefined;
  afterEach(async () => {
    await started?.stop();
    started = undefined;
  });
  return async (options) => {
    started = await startTwoServerFleet(options);
    return started;
  };
}

export async function startTwoServerFleet(options: TwoServerFleetOptions): Promise<TwoServerFleet> {
  const root = await mkdtemp(path.join(tmpdir(), options.prefix));
  const database = await createTestDatabase("postgres");
  const configDir = path.join(root, "turnout.d");
  mkdirSync(configDir);
  const repo = await makeRepo(path.join(root, "origin"));
  await repo.commit({ VERSION: "1\n" }, "one");
  writeFileSync(path.join(configDir, "shop.yaml"), options.manifest(repo.path, root));
  const cluster = await startCluster({
    count: 2,
    root,
    configDir,
    databaseUrl: database.url!,
  });
  const [a, b] = cluster.servers as [ClusterServer, ClusterServer];
  const enroll = (
    await cluster.api(a, "POST", "/api/v1/tokens", {
      name: "enroll",
      role: "agent",
      apps: ["shop"],
      labels: ["role=web"],
    })
  ).body.token as string;
  const agents = options.hosts.map(({ name, on }) =>
    startAgent({
      serverUrl: (on === "a" ? a : b).url,
      token: enroll,
      name,
      root: path.join(root, name),
      labels: { role: "web" },
    }),
  );
  const fleet: TwoServerFleet = {
    root,
    database,
    cluster,
    a,
    b,
    repo,
    enroll,
    agents,
    async stop() {
      for (const agent of fleet.agents) await agent.kill().catch(() => undefined);
      try {
        await assertConsistent(fleet.agents.map((agent) => agent.root));
      } finally {
        await cluster.stop();
        await database.drop();
        await rm(root, { recursive: true, force: true });
      }
    },
  };
  try {
    await waitForClusterHosts(
      cluster,
      options.hosts.map((h) => h.name),
    );
  } catch (error) {
    await fleet.stop().catch(() => undefined);
    throw error;
  }
  return fleet;
}

/**
 * Asks `server` for a deploy of app `shop` to `env` (whichever server claims
 * it runs it), waits for its end and returns it, with its log, as `server`
 * shows them.
 */
export async function deployAndWait(
  cluster: Cluster,
  server: ClusterServer,
  env: string,
): Promise<{ id: number; deploy: any; log: string }> {
  const id = (await cluster.api(server, "POST", `/api/v1/apps/shop/environments/${env}/deploys`, {})).body
    .deploy.id as number;
  await until(
    async () =>
      ["succeeded", "failed", "cancelled"].includes(
        (await cluster.api(server, "GET", `/api/v1/deploys/${id}`)).body.deploy.status,
      ),
    60_000,
    `deploy ${id} finished`,
  );
  const deploy = (await cluster.api(server, "GET", `/api/v1/deploys/${id}`)).body.deploy;
  const log = await (
    await fetch(`${server.url}/api/v1/deploys/${id}/log`, {
      headers: { authorization: `Bearer ${cluster.admin()}` },
    })
  ).text();
  return { id, deploy, log };
}
