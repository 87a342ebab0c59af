import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { startServer } from "../../src/server/start-server.js";
import { startTurnout, type TestTurnout } from "../helpers/turnout.js";
import { until } from "../helpers/wait.js";

/**
 * Workspaces that no running deploy owns are removed when the server starts
 * and after each deploy; the workspace of a deploy still running is never
 * touched by another deploy's sweep. (A real kill -9 leaving a workspace
 * behind is in test/e2e/crash-recovery.test.ts.)
 */
describe("workspace sweep", () => {
  let t: TestTurnout | undefined;
  let marks: string;
  afterEach(async () => {
    await t?.stop();
    t = undefined;
    await rm(marks, { recursive: true, force: true });
  });

  async function start() {
    marks = await mkdtemp(path.join(tmpdir(), "turnout-sweep-marks-"));
    // staging waits for the test's go-ahead, then checks its checkout is still there.
    t = await startTurnout({
      concurrency: 2,
      manifest: `repo: "{repo}"
environments:
  staging:
    deploy:
      provider: shell
      script: |
        touch ${JSON.stringify(path.join(marks, "staging-started"))}
        while [ ! -e ${JSON.stringify(path.join(marks, "go"))} ]; do sleep 0.05; done
        test -f VERSION && echo "workspace still there"
  production:
    deploy:
      provider: shell
      command: [cat, VERSION]
`,
    });
    return t;
  }

  it("removes stale workspaces after a deploy, but not the one of a deploy still running", async () => {
    const t = await start();
    const workspaces = path.join(t.dataDir, "workspaces");
    const slow = (await t.api("POST", "/api/v1/apps/shop/environments/staging/deploys", {})).body.deploy;
    await until(() => existsSync(path.join(marks, "staging-started")), 20_000, "staging deploy running");
    const own = path.join(workspaces, String(slow.id));
    expect(existsSync(path.join(own, "VERSION"))).toBe(true);

    // What a killed server leaves behind: a checkout of a deploy no one runs, and odd entries.
    const stale = [path.join(workspaces, "999999"), path.join(workspaces, "999998.tmp")];
    for (const dir of stale) {
      mkdirSync(path.join(dir, "sub"), { recursive: true });
      writeFileSync(path.join(dir, "sub", "file"), "left over\n");
    }
    writeFileSync(path.join(workspaces, "stray-file"), "x");

    const quick = (await t.api("POST", "/api/v1/apps/shop/environments/production/deploys", {})).body.deploy;
    expect((await t.waitForDeploy(quick.id)).status).toBe("succeeded");
    // The sweep after that deploy runs in the background.
    await until(
      () => stale.every((dir) => !existsSync(dir)) && !existsSync(path.join(workspaces, "stray-file")),
      10_000,
      "stale workspaces removed",
    );
    // The same sweep saw the running deploy's workspace and left it alone.
    expect(existsSync(path.join(own, "VERSION"))).toBe(true);

    writeFileSync(path.join(marks, "go"), "");
    const finished = await t.waitForDeploy(slow.id);
    expect(finished.status).toBe("succeeded");
    const { chunks } = await t.store.logs.read(slow.id, 0);
    expect(chunks.map((c) => c.text).join("")).toContain("workspace still there");
    expect(existsSync(own)).toBe(false);
  });

  it("removes every workspace left in the data directory when the server starts", async () => {
    const t = await start();
    const settings = t.settings;
    await t.server.close();
    const workspaces = path.join(t.dataDir, "workspaces");
    const stale = ["7", "12", "partial-checkout"].map((name) => path.join(workspaces, name));
    for (const dir of stale) {
      mkdirSync(path.join(dir, ".git"), { recursive: true });
      writeFileSync(path.join(dir, "VERSION"), "old\n");
    }

    const lines: string[] = [];
    const again = await startServer(settings, { print: (line) => lines.push(line), polling: false });
    try {
      for (const dir of stale) expect(existsSync(dir)).toBe(false);
      expect(existsSync(workspaces)).toBe(true);
      expect(
        lines.some((l) => l.includes("removed 3 workspace(s) left by deploys that are no longer running")),
      ).toBe(true);
    } finally {
      await again.close();
    }
  });
});
