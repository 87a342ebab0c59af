import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { withGitLog } from "../git/git-spy.js";
import { stagingScript, startTurnout, type TestTurnout } from "../helpers/turnout.js";
import { until } from "../helpers/wait.js";

/**
 * A deploy's commits are described (one `git log`) once its command runs,
 * not on the way to it; a deploy that waits in the queue is described while
 * it waits; a finished deploy is always a described one.
 */
describe("describing a deploy's commits", () => {
  let t: TestTurnout | undefined;
  let dir: string | undefined;
  afterEach(async () => {
    await t?.stop();
    t = undefined;
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const subcommand = (argv: string[]) => argv.filter((a, i) => argv[i - 1] !== "-c" && !a.startsWith("-"))[0];
  const described = async (id: number) =>
    (await t!.api("GET", `/api/v1/deploys/${id}`)).body.deploy.commit?.sha as string | undefined;

  it("runs git log after the checkout, and describes a running and a queued deploy", async () => {
    dir = mkdtempSync(path.join(tmpdir(), "turnout-describe-"));
    const go = path.join(dir, "go");
    const started = path.join(dir, "started");
    let first = 0;
    let second = 0;
    const log = await withGitLog(async () => {
      t = await startTurnout({
        concurrency: 1,
        manifest: stagingScript(`
touch ${started}
while [ ! -f ${go} ]; do sleep 0.02; done
`),
      });
      first = (await t.api("POST", "/api/v1/apps/shop/environments/staging/deploys", {})).body.deploy.id;
      await until(() => existsSync(started), 30_000, "the first deploy's command running");
      // Described while its command runs (not only once it ended).
      await until(
        async () => (await described(first)) === t!.repo.head,
        30_000,
        "the running deploy described",
      );
      // The second waits behind the first: described while it waits.
      second = (await t.api("POST", "/api/v1/apps/shop/environments/staging/deploys", {})).body.deploy.id;
      await until(
        async () => (await described(second)) === t!.repo.head,
        30_000,
        "the queued deploy described",
      );
      expect((await t.api("GET", `/api/v1/deploys/${second}`)).body.deploy.status).toBe("queued");
      writeFileSync(go, "");
      expect((await t.waitForDeploy(first)).status).toBe("succeeded");
      expect((await t.waitForDeploy(second)).status).toBe("succeeded");
    });
    const calls = log.map((call) => subcommand(call.argv));
    // The first deploy: its checkout came before its description.
    expect(calls.indexOf("checkout")).toBeGreaterThanOrEqual(0);
    expect(calls.indexOf("log")).toBeGreaterThan(calls.indexOf("checkout"));
  });

  it("records a deploy as finished only once its commits are described", async () => {
    t = await startTurnout();
    for (let i = 0; i < 3; i++) {
      const id = (await t.api("POST", "/api/v1/apps/shop/environments/staging/deploys", {})).body.deploy.id;
      expect((await t.waitForDeploy(id)).status).toBe("succeeded");
      expect(await described(id)).toBe(t.repo.head);
    }
  });
});
