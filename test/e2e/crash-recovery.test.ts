import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { ensureBuilt, turnout } from "../helpers/built-cli.js";
import { BACKENDS, createTestDatabase, type TestDatabase } from "../helpers/databases.js";
import { makeRepo } from "../helpers/git-fixtures.js";
import { type ServerProcess, startServerProcess } from "../helpers/server-process.js";
import { isAlive, until } from "../helpers/wait.js";

beforeAll(ensureBuilt, 120_000);

/**
 * The crash the design promises to survive: the server is SIGKILLed in the
 * middle of a deploy. After a restart the deploy is `interrupted`, its log up
 * to the kill is still there, the command the dead server left behind is
 * stopped, its workspace is removed, and the next queued deploy runs.
 */
describe.each(BACKENDS)("server killed during a deploy, on %s", (backend) => {
  let root: string;
  let server: ServerProcess | undefined;
  let database: TestDatabase | undefined;

  afterEach(async () => {
    server?.child.kill("SIGKILL");
    await server?.exited;
    await database?.drop();
    await rm(root, { recursive: true, force: true });
  });

  it("marks the deploy interrupted, keeps its log, stops its orphan, removes its workspace and runs the next one", async () => {
    root = await mkdtemp(path.join(tmpdir(), "turnout-e2e-crash-"));
    const dataDir = path.join(root, "data");
    const configDir = path.join(root, "turnout.d");
    const pidFile = path.join(root, "command.pid");
    const repo = await makeRepo(path.join(root, "origin"));
    await repo.commit({ VERSION: "1\n" }, "one");
    mkdirSync(configDir);
    // With --param slow=1 the deploy prints a line a step and takes a minute.
    writeFileSync(
      path.join(configDir, "shop.yaml"),
      `repo: ${JSON.stringify(repo.path)}
environments:
  staging:
    deploy:
      provider: shell
      script: |
        if [ "\${TURNOUT_PARAM_SLOW:-}" = 1 ]; then
          echo $$ > ${JSON.stringify(pidFile)}
          for i in $(seq 1 60); do echo "step $i"; sleep 1; done
        fi
        echo "deploy $TURNOUT_DEPLOY_NUMBER done"
`,
    );
    database = backend === "postgres" ? await createTestDatabase("postgres") : undefined;
    const env = {
      PATH: process.env["PATH"],
      HOME: root,
      XDG_CONFIG_HOME: path.join(root, "xdg"),
      TURNOUT_HOME: dataDir,
      TURNOUT_DATABASE_URL: database?.url,
    };
    const cli = (...argv: string[]) => turnout([...argv, "--server", server!.url], { env, cwd: root });

    server = await startServerProcess({ dataDir, configDir, cwd: root, env });
    const first = await cli("deploy", "shop", "staging", "--param", "slow=1", "--json");
    expect(first.code).toBe(0);
    const slow = JSON.parse(first.stdout).deploy;
    const second = await cli("deploy", "shop", "staging", "--json");
    const next = JSON.parse(second.stdout).deploy;
    expect(next.status).toBe("queued");

    // Polled through the API: a `turnout logs` process per poll cost a Node start each time
    // (the CLI's logs command is exercised below, on the interrupted deploy).
    const admin = readFileSync(path.join(dataDir, "admin-token"), "utf8").trim();
    await until(
      async () => {
        const response = await fetch(`${server!.url}/api/v1/deploys/${slow.id}/log`, {
          headers: { authorization: `Bearer ${admin}` },
        });
        const { chunks } = (await response.json()) as { chunks: { text: string }[] };
        return chunks
          .map((c) => c.text)
          .join("")
          .includes("step 3");
      },
      20_000,
      "step 3 logged",
    );
    const commandPid = Number(readFileSync(pidFile, "utf8"));
    expect(isAlive(commandPid)).toBe(true);
    const workspace = path.join(dataDir, "workspaces", String(slow.id));
    expect(existsSync(path.join(workspace, "VERSION"))).toBe(true);

    server.child.kill("SIGKILL");
    await server.exited;
    // Nobody removes the killed deploy's checkout but the next server.
    expect(existsSync(workspace)).toBe(true);

    server = await startServerProcess({ dataDir, configDir, cwd: root, env });
    // Swept before the new server took any work.
    expect(existsSync(workspace)).toBe(false);

    // The interrupted deploy: failed with `interrupted`, its log kept up to the kill.
    const shown = JSON.parse((await cli("logs", String(slow.id), "--json")).stdout);
    const text = shown.chunks.map((c: { text: string }) => c.text).join("");
    expect(text).toContain("step 1\nstep 2\nstep 3\n");
    expect(text).toContain("interrupted");
    const status = JSON.parse((await cli("status", "shop", "staging", "--json")).stdout);
    const recent = status.environment.recent as {
      number: number;
      status: string;
      errorCode: string | null;
    }[];
    expect(recent.find((d) => d.number === 1)).toMatchObject({ status: "failed", errorCode: "interrupted" });

    // The command the killed server left running is stopped by the new one.
    await until(() => !isAlive(commandPid), 10_000, "orphaned deploy command stopped");

    // And the queue moved on: #2 runs to success.
    const followed = await cli("logs", "shop/staging#2", "--follow");
    expect(followed.code).toBe(0);
    expect(followed.stdout).toContain("deploy 2 done");
  });
});
