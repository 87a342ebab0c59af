// Realistic data for the UI benchmark and the screenshots: git repositories
// with a history of commits by several people over the last weeks, app
// manifests, and a deploy history written straight into a server's database
// (through the built store, before the server starts), backdated so that the
// charts of the last 30 days have something to show.
import { execFileSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { PRIMARY_COMPONENT } from "../dist/domain/app-config.js";
import { Store } from "../dist/store/store.js";

const DAY = 86_400_000;
const PEOPLE = [
  ["Ada Okafor", "ada@example.com"],
  ["Björn Lindqvist", "bjorn@example.com"],
  ["Chen Wei", "chen@example.com"],
  ["Dana Cohen", "dana@example.com"],
  ["Emeka Nwosu", "emeka@example.com"],
  ["Farah Haddad", "farah@example.com"],
];
const SUBJECTS = [
  "Fix rounding of cart totals in EUR",
  "Add retry with backoff to the payment webhook",
  "Bump node to 20.19 in the build image",
  "Cache product images for 24h at the edge",
  "Speed up search suggestions (trigram index)",
  "Drop the legacy v1 checkout endpoint",
  "Log slow queries over 500 ms",
  "Show delivery estimates on the product page",
  "Handle expired sessions without a 500",
  "Migrate orders.created_at to timestamptz",
  "Rate-limit password resets per account",
  "Render invoices as PDF/A",
  "Move feature flags to the config service",
  "Fix flaky integration test for refunds",
  "Add health check for the queue consumer",
  "Translate the checkout into Portuguese",
  "Reduce bundle size of the admin panel",
  "Paginate the order history API",
  "Warm the cache after deploys",
  "Tighten CSP on the storefront",
];

/** Deterministic pseudo-random numbers, so every run seeds the same story. */
export function random(seed) {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

function git(cwd, args, env = {}) {
  return execFileSync("git", args, {
    cwd,
    encoding: "utf8",
    env: {
      ...process.env,
      GIT_CONFIG_NOSYSTEM: "1",
      GIT_CONFIG_GLOBAL: "/dev/null",
      GIT_TERMINAL_PROMPT: "0",
      ...env,
    },
  }).trim();
}

/**
 * A repository with `count` commits spread over the last `days` days (the
 * newest ones may be newer than anything deployed: undeployed commits).
 * Returns the commits oldest first, as {sha, subject, author, date}.
 */
export function makeRepo(dir, { count, days = 30, seed = 1, files = {} }) {
  mkdirSync(dir, { recursive: true });
  git(dir, ["init", "--quiet", "--initial-branch=main"]);
  for (const [name, text] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
    writeFileSync(path.join(dir, name), text);
  }
  const rand = random(seed);
  const now = Date.now();
  const commits = [];
  for (let i = 0; i < count; i++) {
    const [name, email] = PEOPLE[Math.floor(rand() * PEOPLE.length)];
    const subject = SUBJECTS[(i + seed) % SUBJECTS.length];
    const when = new Date(now - days * DAY + ((i + 0.5) / count) * days * DAY).toISOString();
    writeFileSync(path.join(dir, "VERSION"), `1.${Math.floor(i / 10)}.${i % 10}\n`);
    git(dir, ["add", "--all"]);
    git(dir, ["commit", "--quiet", "-m", subject], {
      GIT_AUTHOR_NAME: name,
      GIT_AUTHOR_EMAIL: email,
      GIT_AUTHOR_DATE: when,
      GIT_COMMITTER_NAME: name,
      GIT_COMMITTER_EMAIL: email,
      GIT_COMMITTER_DATE: when,
    });
    commits.push({ sha: git(dir, ["rev-parse", "HEAD"]), subject, author: name, date: when });
  }
  return commits;
}

/**
 * A deploy history for one environment, written through the store as the
 * worker would (created, claimed, finished, release recorded, phases), then
 * backdated. Deploys follow the commits in order; `failEvery` makes some fail.
 */
export async function seedHistory(
  store,
  { app, env, commits, deploys, days = 30, failEvery = 0, seed = 7, user = "ada" },
) {
  const db = store.database.db;
  const rand = random(seed);
  const now = Date.now();
  const owner = `seed:${process.pid}`;
  for (let i = 0; i < deploys; i++) {
    // Spread over the days, the newest a few hours ago; commits advance with time.
    const at = now - days * DAY + ((i + 0.6) / deploys) * days * DAY - 3 * 3_600_000 * rand();
    const eligible = commits.filter((c) => Date.parse(c.date) <= at);
    const commit = eligible.at(-1) ?? commits[0];
    const failed = failEvery > 0 && i % failEvery === failEvery - 1 && i !== deploys - 1;
    const created = await store.deploys.create(
      {
        app,
        env,
        trigger: ["cli", "ui", "auto", "api"][i % 4],
        user: i % 4 === 2 ? "turnout (poll)" : [user, "dana", "chen"][i % 3],
        ref: "main",
        sha: commit.sha,
        components: { [PRIMARY_COMPONENT]: commit.sha },
        params: {},
        force: false,
        configRevision: "seed",
      },
      () => ({ ignoredSafeties: [] }),
    );
    await store.deploys.claimNext(owner, 60_000);
    const done = await store.deploys.finish(created.id, owner, {
      status: failed ? "failed" : "succeeded",
      ...(failed
        ? { errorCode: "command_failed", errorMessage: "the command exited with status 1" }
        : { release: { fingerprint: `seed-${app}-${env}-${i}`, environmentConfig: {} } }),
    });
    await store.commits.record(done.id, { [PRIMARY_COMPONENT]: commit });
    const took = 20_000 + Math.floor(rand() * 70_000);
    const createdAt = new Date(at).toISOString();
    const startedAt = new Date(at + 2_000).toISOString();
    const finishedAt = new Date(at + 2_000 + took).toISOString();
    await db
      .updateTable("deploys")
      .set({ created_at: createdAt, started_at: startedAt, finished_at: finishedAt })
      .where("id", "=", done.id)
      .execute();
    if (done.releaseId !== null) {
      await db
        .updateTable("releases")
        .set({ created_at: finishedAt })
        .where("id", "=", done.releaseId)
        .execute();
    }
    const phases = [
      ["starting", 0],
      ["workspace", 300],
      ["deploy", 2_500],
    ];
    for (const [phase, offset] of phases) {
      await store.phases.record(done.id, phase, "running", new Date(at + 2_000 + offset).toISOString());
    }
  }
}

export async function openStore(dataDir) {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  return Store.open({ sqliteFile: path.join(dataDir, "turnout.db") });
}
