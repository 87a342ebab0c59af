import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { ensureBuilt, turnout } from "../helpers/built-cli.js";
import { BACKENDS, createTestDatabase, type TestDatabase } from "../helpers/databases.js";
import { makeRepo } from "../helpers/git-fixtures.js";
import { logRecords, type ServerProcess, startServerProcess } from "../helpers/server-process.js";
import { isAlive, until } from "../helpers/wait.js";

beforeAll(ensureBuilt, 120_000);

/**
 * `turnout server` stopped with SIGTERM while a deploy runs, as a service
 * manager stops it: the running deploy finishes within the grace, or is
 * recorded `interrupted` when it outlives it (or a second signal comes);
 * queued deploys stay queued for the next server, and every step is printed.
 */
describe.each(BACKENDS)("SIGTERM during a deploy, on %s", (backend) => {
  let root: string;
  let marks: string;
  let server: ServerProcess | undefined;
  let database: TestDatabase | undefined;
  let env: Record<string, string | undefined>;
  let dataDir: string;
  let configDir: string;

  afterEach(async () => {
    server?.child.kill("SIGKILL");
    await server?.exited;
    server = undefined;
    await database?.drop();
    database = undefined;
    await rm(root, { recursive: true, force: true });
  });

  /**
   * `shop/staging`: with --param slow=1 a deploy prints a line, then waits
   * for the file `go` (which a test may never create); every deploy leaves
   * `started-N` behind, so a test can tell which ones ever ran.
   */
  async function setUp(extraEnv: Record<string, string> = {}) {
    root = await mkdtemp(path.join(tmpdir(), "turnout-e2e-shutdown-"));
    marks = path.join(root, "marks");
    mkdirSync(marks);
    dataDir = path.join(root, "data");
    configDir = path.join(root, "turnout.d");
    const repo = await makeRepo(path.join(root, "origin"));
    await repo.commit({ VERSION: "1\n" }, "one");
    mkdirSync(configDir);
    writeFileSync(
      path.join(configDir, "shop.yaml"),
      `repo: ${JSON.stringify(repo.path)}
environments:
  staging:
    deploy:
      provider: shell
      script: |
        touch ${JSON.stringify(marks)}/started-$TURNOUT_DEPLOY_NUMBER
        if [ "\${TURNOUT_PARAM_SLOW:-}" = 1 ]; then
          echo $$ > ${JSON.stringify(path.join(marks, "pid"))}
          echo "slow deploy waiting"
          while [ ! -e ${JSON.stringify(path.join(marks, "go"))} ]; do sleep 0.1; done
        fi
        echo "deploy $TURNOUT_DEPLOY_NUMBER done"
`,
    );
    database = backend === "postgres" ? await createTestDatabase("postgres") : undefined;
    env = {
      PATH: process.env["PATH"],
      HOME: root,
      XDG_CONFIG_HOME: path.join(root, "xdg"),
      TURNOUT_HOME: dataDir,
      TURNOUT_DATABASE_URL: database?.url,
      ...extraEnv,
    };
    server = await startServerProcess({ dataDir, configDir, cwd: root, env });
  }

  const cli = (...argv: string[]) => turnout([...argv, "--server", server!.url], { env, cwd: root });
  const admin = () => readFileSync(path.join(dataDir, "admin-token"), "utf8").trim();
  const api = async (method: string, urlPath: string, body?: unknown) => {
    const response = await fetch(server!.url + urlPath, {
      method,
      headers: {
        authorization: `Bearer ${admin()}`,
        ...(body !== undefined ? { "content-type": "application/json" } : {}),
      },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    return { status: response.status, body: (await response.json()) as any };
  };

  /** The deploy's stored log (first page: these logs are a few lines). */
  const logText = async (label: string) =>
    ((await api("GET", `/api/v1/deploys/${encodeURIComponent(label)}/log`)).body.chunks as { text: string }[])
      .map((c) => c.text)
      .join("");

  /** #1 slow and running (waiting for `go`), #2 queued behind it. */
  async function slowAndQueued() {
    const first = await cli("deploy", "shop", "staging", "--param", "slow=1", "--json");
    expect(first.code, first.stderr).toBe(0);
    const second = JSON.parse((await cli("deploy", "shop", "staging", "--json")).stdout).deploy;
    expect(second.status).toBe("queued");
    // Polled through the API: a `turnout logs` process per poll cost a Node start each time
    // (the CLI's logs command is exercised below, once the outcome is known).
    await until(
      async () => (await logText("shop/staging#1")).includes("slow deploy waiting"),
      20_000,
      "slow deploy running",
    );
  }

  async function restartAndSeeTheQueueMoveOn() {
    server = await startServerProcess({ dataDir, configDir, cwd: root, env });
    const followed = await cli("logs", "shop/staging#2", "--follow");
    expect(followed.code, followed.stderr).toBe(0);
    expect(followed.stdout).toContain("deploy 2 done");
  }

  const statusOf = async (number: number) => {
    const status = JSON.parse((await cli("status", "shop", "staging", "--json")).stdout);
    return (status.environment.recent as any[]).find((d) => d.number === number);
  };

  it("lets a running deploy finish, refuses new work meanwhile, and leaves the queue for the next server", async () => {
    await setUp();
    await slowAndQueued();

    server!.child.kill("SIGTERM");
    await until(
      () =>
        server!
          .output()
          .includes(
            "shutting down: waiting up to 1m for 1 running deploy (shop/staging#1); a second SIGTERM or Ctrl-C interrupts them now",
          ),
      10_000,
      "the shutdown line",
    );
    // Draining: new work is refused, reads still answer.
    const refused = await api("POST", "/api/v1/apps/shop/environments/staging/deploys", {});
    expect(refused.status).toBe(503);
    expect(refused.body.error.code).toBe("E_UNAVAILABLE");
    expect(refused.body.error.message).toContain("shutting down");
    const lock = await api("PUT", "/api/v1/apps/shop/environments/staging/lock", { reason: "x" });
    expect(lock.status).toBe(503);
    const read = await api("GET", "/api/v1/deploys?app=shop&env=staging");
    expect(read.status).toBe(200);
    expect(read.body.deploys.map((d: any) => [d.number, d.status])).toEqual([
      [2, "queued"],
      [1, "running"],
    ]);

    // The deploy's command finishes, well within the grace.
    writeFileSync(path.join(marks, "go"), "");
    expect(await server!.exited).toBe(0);
    const printed = server!.output();
    expect(printed).toMatch(
      /deploy shop\/staging#1: started \(trigger cli, by admin, main at [0-9a-f]{12}\)/,
    );
    expect(printed).toMatch(/deploy shop\/staging#1: succeeded in \S+ \(trigger cli, by admin\)/);
    expect(printed).toContain("shutting down: no deploy running; closing agent connections");
    // The last line of the (JSON) log says it stopped.
    expect(logRecords(printed).at(-1)).toMatchObject({ msg: "stopped", event: "shutdown.stopped" });
    // The queued deploy was not started by the stopping server.
    expect(existsSync(path.join(marks, "started-2"))).toBe(false);
    expect(printed).not.toContain("shop/staging#2: started");

    await restartAndSeeTheQueueMoveOn();
    expect(await statusOf(1)).toMatchObject({ status: "succeeded" });
    const log = (await cli("logs", "shop/staging#1")).stdout;
    expect(log).toContain("deploy 1 done");
    expect(log).not.toContain("cancelled");
  });

  it("interrupts a deploy that outlives the grace, records why, stops its command and exits", async () => {
    await setUp({ TURNOUT_SHUTDOWN_GRACE: "1s" });
    await slowAndQueued();
    const commandPid = Number(readFileSync(path.join(marks, "pid"), "utf8"));

    server!.child.kill("SIGTERM");
    expect(await server!.exited).toBe(0);
    const printed = server!.output();
    expect(printed).toContain("shutting down: waiting up to 1s for 1 running deploy (shop/staging#1)");
    expect(printed).toContain("shutting down: grace of 1s over, interrupting shop/staging#1");
    expect(printed).toContain(
      "deploy shop/staging#1: failed (interrupted: the server shut down before this deploy finished (grace 1s))",
    );
    // The last line of the (JSON) log says it stopped.
    expect(logRecords(printed).at(-1)).toMatchObject({ msg: "stopped", event: "shutdown.stopped" });
    expect(isAlive(commandPid)).toBe(false);
    expect(existsSync(path.join(marks, "started-2"))).toBe(false);

    await restartAndSeeTheQueueMoveOn();
    expect(await statusOf(1)).toMatchObject({
      status: "failed",
      errorCode: "interrupted",
    });
    const log = (await cli("logs", "shop/staging#1")).stdout;
    expect(log).toContain("slow deploy waiting");
    expect(log).toContain("==> interrupted: the server shut down before this deploy finished (grace 1s)");
    expect(log).not.toContain("deploy 1 done");
  });

  it("stops waiting at a second SIGTERM and interrupts at once", async () => {
    await setUp();
    await slowAndQueued();

    server!.child.kill("SIGTERM");
    await until(
      () => server!.output().includes("shutting down: waiting up to 1m for 1 running deploy"),
      10_000,
      "the shutdown line",
    );
    server!.child.kill("SIGTERM");
    expect(await server!.exited).toBe(0);
    expect(server!.output()).toContain("shutting down: told again to stop, interrupting shop/staging#1");

    await restartAndSeeTheQueueMoveOn();
    expect(await statusOf(1)).toMatchObject({ status: "failed", errorCode: "interrupted" });
    expect((await cli("logs", "shop/staging#1")).stdout).toContain(
      "==> interrupted: the server was told a second time to stop and did not wait for this deploy to finish",
    );
  });
});
