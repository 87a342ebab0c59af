import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { withGitLog } from "../git/git-spy.js";
import { startTurnout, type TestTurnout } from "../helpers/turnout.js";

/**
 * The overview's "n undeployed" is counted after every look (poll, webhook,
 * push) with a `git rev-list`: a look that brings nothing new must not count
 * again, since most looks bring nothing.
 */
describe("undeployed counts", () => {
  let t: TestTurnout;
  beforeAll(async () => {
    t = await startTurnout();
  }, 60_000);
  afterAll(async () => {
    await t?.stop();
  });

  const undeployed = async () =>
    (await t.api("GET", "/api/v1/overview")).body.apps
      .find((a: any) => a.name === "shop")
      .environments.find((e: any) => e.name === "staging").undeployed;
  const countsDuring = async (look: () => Promise<unknown>) =>
    (
      await withGitLog(async () => {
        await look();
      })
    ).filter((call) => call.argv.includes("rev-list")).length;

  it("are counted again only when a look brings a commit or the release changes", async () => {
    const first = await t.repo.commit({ a: "1" }, "One");
    expect(await countsDuring(() => t.engine.poke("shop", "poll"))).toBeGreaterThan(0);
    expect(await undeployed()).toMatchObject({ count: 2, newestSha: first });

    // Nothing new: no count, the figure stays.
    expect(await countsDuring(() => t.engine.poke("shop", "poll"))).toBe(0);
    expect(await undeployed()).toMatchObject({ count: 2, newestSha: first });

    // A new commit is counted.
    const second = await t.repo.commit({ b: "2" }, "Two");
    expect(await countsDuring(() => t.engine.poke("shop", "poll"))).toBeGreaterThan(0);
    expect(await undeployed()).toMatchObject({ count: 3, newestSha: second });

    // A deploy changes the release: counted again, down to 0.
    const deploy = await t.api("POST", "/api/v1/apps/shop/environments/staging/deploys", {});
    expect((await t.waitForDeploy(deploy.body.deploy.id)).status).toBe("succeeded");
    await t.engine.poke("shop", "poll");
    expect(await undeployed()).toMatchObject({ count: 0 });
  });
});
