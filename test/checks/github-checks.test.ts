import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { GithubChecks } from "../../src/checks/github-checks.js";
import type { GithubConfig } from "../../src/domain/app-config.js";
import { type FakeGithub, startFakeGithub } from "../helpers/fake-github.js";

const REPO = "acme/shop";
const SHA = "0123456789abcdef0123456789abcdef01234567";
const TOKEN = "ghp_s3cretT0kenValue";

let fake: FakeGithub | undefined;
let hanging: Server | undefined;
afterEach(async () => {
  await fake?.close();
  fake = undefined;
  hanging?.closeAllConnections();
  await new Promise((resolve) => (hanging ? hanging.close(resolve) : resolve(undefined)));
  hanging = undefined;
});

async function setup(options: { token?: string; prefix?: string } = {}) {
  fake = await startFakeGithub({ repos: [REPO], ...options });
  const github: GithubConfig = {
    apiUrl: fake.url,
    repository: REPO,
    ...(options.token ? { token: options.token } : {}),
  };
  return { fake, github, checks: new GithubChecks({ userAgent: "turnout-test" }) };
}

async function rejection(promise: Promise<unknown>): Promise<any> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error("expected a rejection");
}

describe("GithubChecks.report", () => {
  it("succeeds on commit statuses only", async () => {
    const { fake, github, checks } = await setup();
    fake.setStatus(REPO, SHA, "ci/build", "success", "Build passed");
    fake.setStatus(REPO, SHA, "ci/test", "success");
    const report = await checks.report(github, SHA, ["ci/build", "ci/test"]);
    expect(report.state).toBe("success");
    expect(report.checks[0]).toMatchObject({
      name: "ci/build",
      source: "status",
      description: "Build passed",
    });
    expect(report.checks[0]!.url).toMatch(/^https:\/\/ci\.example\.com\//);
  });

  it("succeeds on check runs only", async () => {
    const { fake, github, checks } = await setup();
    fake.setCheckRun(REPO, SHA, "build", "completed", "success");
    fake.setCheckRun(REPO, SHA, "lint", "completed", "neutral");
    const report = await checks.report(github, SHA, ["build", "lint"]);
    expect(report.state).toBe("success");
    expect(report.checks.map((c) => c.source)).toEqual(["check_run", "check_run"]);
  });

  it("succeeds on a mix, and ignores checks that are not required", async () => {
    const { fake, github, checks } = await setup();
    fake.setStatus(REPO, SHA, "ci/build", "success");
    fake.setCheckRun(REPO, SHA, "lint", "completed", "skipped");
    fake.setCheckRun(REPO, SHA, "optional", "completed", "failure");
    fake.setStatus(REPO, SHA, "coverage", "failure");
    expect((await checks.report(github, SHA, ["ci/build", "lint"])).state).toBe("success");
  });

  it("is pending while a required check is missing or still running", async () => {
    const { fake, github, checks } = await setup();
    fake.setStatus(REPO, SHA, "ci/build", "success");
    let report = await checks.report(github, SHA, ["ci/build", "lint"]);
    expect(report).toMatchObject({ state: "pending", missing: ["lint"] });
    fake.setCheckRun(REPO, SHA, "lint", "in_progress");
    report = await checks.report(github, SHA, ["ci/build", "lint"]);
    expect(report).toMatchObject({ state: "pending", missing: [] });
    expect(report.checks[1]).toMatchObject({ name: "lint", state: "pending" });
  });

  it("fails naming the failed check", async () => {
    const { fake, github, checks } = await setup();
    fake.setStatus(REPO, SHA, "ci/build", "success");
    fake.setCheckRun(REPO, SHA, "lint", "completed", "timed_out");
    fake.setStatus(REPO, SHA, "ci/test", "error", "Tests crashed");
    const report = await checks.report(github, SHA, ["ci/build", "lint", "ci/test"]);
    expect(report.state).toBe("failure");
    expect(report.failed).toBe("lint");
  });

  it("lets failure beat success when a name is both a status and a check run", async () => {
    const { fake, github, checks } = await setup();
    fake.setStatus(REPO, SHA, "ci", "success");
    fake.setCheckRun(REPO, SHA, "ci", "completed", "failure");
    const report = await checks.report(github, SHA, ["ci"]);
    expect(report).toMatchObject({ state: "failure", failed: "ci" });
  });

  it("takes the newest status of a context and the newest run of a name", async () => {
    const { fake, github, checks } = await setup();
    fake.setStatus(REPO, SHA, "ci", "failure");
    fake.setStatus(REPO, SHA, "ci", "success");
    fake.setCheckRun(REPO, SHA, "lint", "completed", "failure");
    fake.setCheckRun(REPO, SHA, "lint", "completed", "success");
    expect((await checks.report(github, SHA, ["ci", "lint"])).state).toBe("success");
    fake.setStatus(REPO, SHA, "ci", "pending");
    expect((await checks.report(github, SHA, ["ci", "lint"])).state).toBe("pending");
  });

  it("follows the Link header through more than 100 check runs and statuses", async () => {
    const { fake, github, checks } = await setup();
    for (let i = 0; i < 250; i++) fake.setCheckRun(REPO, SHA, `job-${i}`, "completed", "success");
    for (let i = 0; i < 120; i++) fake.setStatus(REPO, SHA, `ctx-${i}`, "success");
    // The fake lists newest first: job-0 and ctx-0 are on the last pages.
    const report = await checks.report(github, SHA, ["job-0", "ctx-0"]);
    expect(report.state).toBe("success");
    const runPages = fake.requests.filter((r) => r.path.includes("/check-runs"));
    expect(runPages.map((r) => new URL(r.path, "http://x").searchParams.get("page") ?? "1")).toEqual([
      "1",
      "2",
      "3",
    ]);
    expect(runPages.every((r) => r.path.includes("per_page=100"))).toBe(true);
    expect(fake.requests.filter((r) => r.path.includes("/status")).length).toBe(2);
  });

  it("works against GitHub Enterprise's /api/v3 prefix", async () => {
    const { fake, github, checks } = await setup({ prefix: "/api/v3" });
    expect(fake.url).toMatch(/\/api\/v3$/);
    fake.setStatus(REPO, SHA, "ci", "success");
    expect((await checks.report(github, SHA, ["ci"])).state).toBe("success");
    expect(fake.requests.map((r) => r.path.split("?")[0])).toEqual(
      expect.arrayContaining([
        `/api/v3/repos/${REPO}/commits/${SHA}/status`,
        `/api/v3/repos/${REPO}/commits/${SHA}/check-runs`,
      ]),
    );
    // Without the prefix the same server is not GitHub Enterprise's API.
    const error = await rejection(
      checks.report({ ...github, apiUrl: fake.url.replace(/\/api\/v3$/, "") }, SHA, ["ci"]),
    );
    expect(error.details).toMatchObject({ status: 404, retryable: false });
  });

  it("sends the token and GitHub's headers", async () => {
    const { fake, github, checks } = await setup({ token: TOKEN });
    fake.setStatus(REPO, SHA, "ci", "success");
    expect((await checks.report(github, SHA, ["ci"])).state).toBe("success");
    expect(fake.requests.length).toBe(2);
    for (const request of fake.requests) {
      expect(request.authorization).toBe(`Bearer ${TOKEN}`);
      expect(request.headers["accept"]).toBe("application/vnd.github+json");
      expect(request.headers["x-github-api-version"]).toBe("2022-11-28");
      expect(request.headers["user-agent"]).toBe("turnout-test");
    }
  });

  it("explains a 401 without revealing the token", async () => {
    const { github, checks } = await setup({ token: TOKEN });
    const wrong = { ...github, token: `${TOKEN}-revoked`, tokenEnv: "GITHUB_TOKEN" };
    const error = await rejection(checks.report(wrong, SHA, ["ci"]));
    expect(error.code).toBe("E_CONFIG");
    expect(error.details).toMatchObject({ status: 401, retryable: false });
    expect(error.message).toContain("GitHub answered 401 (Bad credentials) for acme/shop");
    expect(error.message).toContain("GITHUB_TOKEN");
    expect(JSON.stringify(error)).not.toContain(TOKEN);
    // And no token at all is refused the same way.
    const none = await rejection(checks.report({ apiUrl: github.apiUrl, repository: REPO }, SHA, ["ci"]));
    expect(none.details).toMatchObject({ status: 401 });
  });

  it("explains a 404 for an unknown repository", async () => {
    const { github, checks } = await setup();
    const error = await rejection(checks.report({ ...github, repository: "acme/nope" }, SHA, ["ci"]));
    expect(error.code).toBe("E_CONFIG");
    expect(error.message).toBe(
      "GitHub answered 404 (Not Found) for acme/nope: check github.repository and the token",
    );
  });

  it("reports 5xx as retryable", async () => {
    const { fake, github, checks } = await setup();
    fake.failNext(502, 1);
    const error = await rejection(checks.report(github, SHA, ["ci"]));
    expect(error.code).toBe("E_UNAVAILABLE");
    expect(error.details).toMatchObject({ status: 502, retryable: true });
    fake.setStatus(REPO, SHA, "ci", "success");
    expect((await checks.report(github, SHA, ["ci"])).state).toBe("success");
  });

  it("reports a rate limit (429) as retryable", async () => {
    const { fake, github, checks } = await setup();
    fake.failNext(429, 2);
    const error = await rejection(checks.report(github, SHA, ["ci"]));
    expect(error.details).toMatchObject({ status: 429, retryable: true });
    expect(error.message).toContain("rate limited");
  });

  it("gives up on a request GitHub does not answer, as retryable", async () => {
    hanging = createServer(() => {
      // never answers
    });
    await new Promise<void>((resolve) => hanging!.listen(0, "127.0.0.1", resolve));
    const apiUrl = `http://127.0.0.1:${(hanging.address() as AddressInfo).port}`;
    const checks = new GithubChecks({ timeoutMs: 100 });
    const started = Date.now();
    const error = await rejection(checks.report({ apiUrl, repository: REPO, token: TOKEN }, SHA, ["ci"]));
    expect(Date.now() - started).toBeLessThan(2000);
    expect(error.code).toBe("E_UNAVAILABLE");
    expect(error.message).toBe("GitHub did not answer within 100ms for acme/shop");
  });

  it("reports an unreachable server as retryable, without the token", async () => {
    const { fake, github } = await setup({ token: TOKEN });
    await fake.close();
    const error = await rejection(new GithubChecks().report(github, SHA, ["ci"]));
    expect(error.code).toBe("E_UNAVAILABLE");
    expect(error.message).toMatch(
      /could not reach GitHub at http:\/\/127\.0\.0\.1:\d+ for acme\/shop: .*ECONNREFUSED/,
    );
    expect(JSON.stringify(error)).not.toContain(TOKEN);
  });

  it("asks nothing when nothing is required, and refuses a malformed repository", async () => {
    const { fake, github, checks } = await setup();
    expect(await checks.report(github, SHA, [])).toEqual({ state: "success", checks: [], missing: [] });
    expect(fake.requests).toHaveLength(0);
    const error = await rejection(checks.report({ ...github, repository: "../.." }, SHA, ["ci"]));
    expect(error.code).toBe("E_CONFIG");
    expect(fake.requests).toHaveLength(0);
  });
});
